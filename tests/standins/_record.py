import json
import os


def record(call: str, **fields) -> None:
    path = os.environ.get("TRELLIS_STANDIN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(dict(call=call, pid=os.getpid(), **fields), default=repr) + "\n")
