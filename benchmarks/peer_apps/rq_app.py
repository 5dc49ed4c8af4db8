"""RQ: the task module its workers import (`rq worker` forks a work horse per job)."""


def noop():
    return None
