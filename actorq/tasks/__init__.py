"""What a task is: the @task registry, submit options, the retry policy, rate limits. Pure; shared by clients, the broker and workers."""
