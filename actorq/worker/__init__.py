"""Worker processes and the supervisor that owns a pool of them."""
