"""A local stand-in for the HuggingFace hub, in the hub's URL layout, for the model-cache tests.

Serves every folder under ``root`` as a model repo ``org/name`` at one fixed revision. The
code under test is the real ``huggingface_hub`` client pointed here with ``HF_ENDPOINT``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from serving import ServerThread

SHA = "0123456789abcdef0123456789abcdef01234567"


def hub_app(root: Path, delay_s: float = 0.0) -> FastAPI:
    app = FastAPI()

    def repo(org: str, name: str) -> Path:
        path = root / org / name
        if not path.is_dir():
            raise HTTPException(404, headers={"X-Error-Code": "RepoNotFound"})
        return path

    def files(path: Path) -> list[Path]:
        return sorted(p for p in path.rglob("*") if p.is_file())

    @app.get("/api/models/{org}/{name}/revision/{revision}")
    @app.get("/api/models/{org}/{name}")
    def info(org: str, name: str, revision: str = "main") -> JSONResponse:
        path = repo(org, name)
        siblings = [{"rfilename": str(p.relative_to(path)), "size": p.stat().st_size} for p in files(path)]
        return JSONResponse({"id": f"{org}/{name}", "modelId": f"{org}/{name}", "sha": SHA, "siblings": siblings,
                             "private": False, "usedStorage": sum(s["size"] for s in siblings)})

    @app.get("/api/models/{org}/{name}/tree/{revision}")
    def tree(org: str, name: str, revision: str) -> JSONResponse:
        path = repo(org, name)
        return JSONResponse([{"type": "file", "path": str(p.relative_to(path)), "size": p.stat().st_size,
                              "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for p in files(path)])

    @app.api_route("/{org}/{name}/resolve/{revision}/{filename:path}", methods=["GET", "HEAD"])
    def resolve(org: str, name: str, revision: str, filename: str, request: Request) -> Response:
        path = repo(org, name) / filename
        if not path.is_file():
            raise HTTPException(404, headers={"X-Error-Code": "EntryNotFound"})
        data = path.read_bytes()
        headers = {"X-Repo-Commit": SHA, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Content-Length": str(len(data))}
        if request.method == "HEAD":
            return Response(headers=headers)
        if delay_s:
            time.sleep(delay_s)
        return Response(content=data, headers=headers, media_type="application/octet-stream")

    return app


class Hub(ServerThread):
    """Runs ``hub_app`` on a free loopback port in a background thread."""

    def __init__(self, root: Path, delay_s: float = 0.0) -> None:
        super().__init__(hub_app(root, delay_s))


def publish_tiny_model(root: Path, repo_id: str = "tiny/gpt2") -> Path:
    """Build a tiny GPT-2 and its byte tokenizer and lay them out as a hub repo."""
    import transformers

    from scheduler.workloads.hf import byte_tokenizer

    path = root / repo_id
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_tokenizer()
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tokenizer),
                                     bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
