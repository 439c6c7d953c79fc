"""What goes over the pipe between the trainer (service.py) and the tracking process
(process.py): one call type one way, three answers the other, pickled by multiprocessing's
Connection. Both sides import these, so a message's fields are named once."""
from typing import Any, NamedTuple, Optional


class Call(NamedTuple):
    """Trainer -> tracking process: `method` of the tracker (handle None) or of run `handle`,
    by name from process.py's allow-list; `reply`: the trainer waits for the answer; `remove`:
    a spooled folder the process deletes once the call is done."""
    handle: Optional[int]
    method: str
    args: tuple
    reply: bool = False
    remove: Optional[str] = None


class Started(NamedTuple):
    """The run `handle` exists in the store as `run_id`: the trainer can close it if we die (and
    link to it in `experiment_id` without another question)."""
    handle: int
    run_id: str
    experiment_id: str = ""


class Reply(NamedTuple):
    """The answer to the one call the trainer is waiting for."""
    value: Any


class Refused(NamedTuple):
    """The store (or the allow-list) refused a call of run `handle`; `user`: bad input (exit 2);
    `answered`: this is the answer to a call the trainer waits for, else news it reads later;
    `offline`: its server stopped answering, the run is kept on disk (tracking/spool.py)."""
    handle: Optional[int]
    user: bool
    message: str
    answered: bool
    offline: bool = False
