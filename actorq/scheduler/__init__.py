"""The scheduler actor: delayed tasks, retry back-off timers and cron."""
