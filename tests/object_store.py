"""Real object-storage servers for tests, each a process of its own on 127.0.0.1, stopped by its id:
an S3-compatible one (moto's server mode, which s3fs's own tests use) and a GCS emulator
(gcp-storage-emulator). Clients reach them through the stores' standard variables, as a user's
would reach another host: AWS_ENDPOINT_URL and AWS's key variables for S3, STORAGE_EMULATOR_HOST
for GCS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from ray_cluster import free_port, wait_for_port


class Server:
    """A server process of its own (a session of its own, so that signals to the tests do not reach it)."""

    def __init__(self, command: list[str], port: int):
        self.folder = Path(tempfile.mkdtemp(prefix="store-"))
        self.log = open(self.folder / "server.log", "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder)
        self.port = port
        try:
            wait_for_port(port, timeout=60)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class S3Server(Server):
    """moto's S3 on 127.0.0.1; `env` is what a client of it needs."""

    def __init__(self):
        port = free_port()
        super().__init__([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port)
        self.env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def bucket(self) -> str:
        """A new bucket's name."""
        import boto3

        name = f"b-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"], aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket=name)
        return name


class GcsServer(Server):
    """gcp-storage-emulator's GCS on 127.0.0.1, in memory."""

    def __init__(self):
        port = free_port()
        emulator = shutil.which("gcp-storage-emulator", path=os.path.dirname(sys.executable)) or "gcp-storage-emulator"
        super().__init__([emulator, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"], port)
        self.env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}

    def bucket(self) -> str:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        name = f"b-{uuid.uuid4().hex[:12]}"
        storage.Client(project="tests", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.env["STORAGE_EMULATOR_HOST"]}).create_bucket(name)
        return name


class DelayingProxy:
    """A TCP proxy on 127.0.0.1 in front of a server, holding each chunk a client sends for
    `delay` seconds before passing it on: a store as far away as a round trip of `delay`, for
    what a benchmark should see of a remote one (moto itself answers at once). Runs in a thread
    of its own until stop()."""

    def __init__(self, target_port: int, delay: float):
        import asyncio
        import threading

        self.delay, self.target_port = delay, target_port
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _serve(self, ready) -> None:
        import asyncio

        async def pipe(reader, writer, delay: float) -> None:
            try:
                while chunk := await reader.read(65536):
                    if delay:
                        await asyncio.sleep(delay)
                    writer.write(chunk)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def handle(client_reader, client_writer) -> None:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(pipe(client_reader, server_writer, self.delay), pipe(server_reader, client_writer, 0.0))

        async def start():
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
