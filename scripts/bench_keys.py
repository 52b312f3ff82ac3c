"""CPU per request of the virtual-key path (identify, admit, headers, finish) vs the master key.

Run: .venv/bin/python scripts/bench_keys.py. process_time counts every thread, so the
SQLite writer flushing spend rows meanwhile is included.
"""

import tempfile
import time

import trio

from feathergate.config import parse_config
from feathergate.keys.records import KeyRecord
from feathergate.keys.tokens import generate_key, hash_key, key_name
from feathergate.keys.wiring import build_key_service
from feathergate.providers.base import Usage


async def main():
    d = tempfile.mkdtemp()
    cfg = parse_config(
        {
            "model_list": [
                {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_key": "x"}}
            ],
            "general_settings": {
                "master_key": "sk-master-xxxxxxxxxxxx",
                "database_url": f"sqlite:///{d}/k.db",
            },
        },
        {},
    )
    svc = build_key_service(cfg)
    async with trio.open_nursery() as n:
        await svc.open(n)
        raw = generate_key()
        await svc.store.insert_key(
            KeyRecord(
                hash_key(raw),
                key_name(raw),
                max_budget=1e9,
                rpm_limit=10**9,
                tpm_limit=10**12,
                created_at=time.time(),
                updated_at=time.time(),
            )
        )
        headers = [(b"authorization", b"Bearer " + raw.encode())]
        p = await svc.identify(headers)
        usage = Usage(9, 4)
        N = 20000
        t0 = time.process_time()
        for _ in range(N):
            p = await svc.identify(headers)
            a = await svc.admit(p, "gpt", 30, None)
            svc.response_headers(a, cfg.deployments[0].id, usage)
            svc.finish(a, cfg.deployments[0].id, usage, 0, 200)
        t1 = time.process_time()
        m = [(b"authorization", b"Bearer sk-master-xxxxxxxxxxxx")]
        for _ in range(N):
            await svc.identify(m)
        t2 = time.process_time()
        print(
            f"virtual key: {(t1 - t0) / N * 1e6:.1f} us/request CPU; "
            f"master key identify: {(t2 - t1) / N * 1e6:.1f} us"
        )
        await svc.close()
        n.cancel_scope.cancel()


trio.run(main)
