"""A node: its config, the process tree `actorq run` starts, and the actor skeleton every actor process uses."""
