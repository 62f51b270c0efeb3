"""The API over a named scheduler actor, in its own process (so the load client does not share its GIL)."""

from __future__ import annotations

import sys

import ray
import uvicorn

from api.app import create_app
from api.backend import ActorBackend
from scheduler.config import NAMESPACE

if __name__ == "__main__":
    address, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    app = create_app(ActorBackend(ray.get_actor(name, namespace=NAMESPACE)), token=None)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
