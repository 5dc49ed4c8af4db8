from actorq.cli import main

raise SystemExit(main())
