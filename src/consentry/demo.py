"""``python -m consentry.demo`` (what ``make demo`` runs): a demo service with people in it.

Builds, fresh on every run, two stores under ``./demo/`` and serves them:

- ``meetings`` (``policies/meetings.yaml``, both versions) on http://127.0.0.1:8000: an
  organisation account ``acme`` with an administrator and members, a solo user, some choices,
  a synthetic training manifest gated into a dataset and a model registered on it;
- ``music`` (``policies/music.yaml``) on http://127.0.0.1:8001: an artist.

``--port`` moves the meetings service (``make demo PORT=8100``) and the music service with it
(to the next port, unless ``--music-port`` says otherwise). Both ports are taken before
anything is built: a port another program listens on is named, with how to choose another,
and nothing is built or printed for a server that is not ours.

It prints a sign-in link for each demo user and an API key for ``curl``, and serves until
stopped with Ctrl-C. Each service has a session cookie of its own (``consentry_meetings_
session``, ``consentry_music_session``): signing in to one does not sign you out of the other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import errno
import json
import secrets
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from .store import Store

ROOT = Path(__file__).resolve().parents[2]
LINK_DAYS = 7


@dataclass(frozen=True)
class Person:
    sub: str
    role: str
    note: str
    account: str | None = None


@dataclass
class DemoStore:
    name: str
    url: str
    port: int
    secret: str
    people: list[Person]
    secret_file: Path
    service_key: str = ""
    admin_key: str = ""
    notes: list[str] = field(default_factory=list)

    def link(self, host: str, person: Person) -> str:
        return f"http://{host}:{self.port}/login?token={token(self.secret, person)}"


def token(secret: str, person: Person, days: int = LINK_DAYS) -> str:
    """A sign-in token as the platform would sign it for this person."""
    claims: dict[str, Any] = {
        "sub": person.sub,
        "role": person.role,
        "aud": "consentry",
        "exp": int(time.time()) + days * 86400,
    }
    if person.account:
        claims["account"] = person.account
    return jwt.encode(claims, secret, algorithm="HS256")


def policy_file(name: str) -> Path:
    for base in (ROOT, Path.cwd()):
        path = base / "policies" / name
        if path.is_file():
            return path
    raise SystemExit(f"cannot find policies/{name}: run the demo from the repository")


MEETINGS_PEOPLE = [
    Person("alice@acme.example", "account_admin", "administrator of acme", "acme"),
    Person("bob@acme.example", "subject", "member of acme, opted in to training"),
    Person("carol@acme.example", "subject", "member of acme, said no to training"),
    Person("dan@acme.example", "subject", "member of acme, no choice yet"),
    Person("erin@solo.example", "subject", "solo user, not in any organisation"),
    Person(
        "gina@globex.example",
        "subject",
        "member of globex (which switched training off), a guest in acme's meetings",
    ),
]
#: The account each demo person's own recordings belong to (the manifest's account column).
HOME_ACCOUNT = {
    "alice@acme.example": "acme",
    "bob@acme.example": "acme",
    "carol@acme.example": "acme",
    "dan@acme.example": "acme",
    "gina@globex.example": "globex",
}
MUSIC_PEOPLE = [Person("frank-the-artist", "subject", "an artist on the music platform")]


def build_meetings(directory: Path, port: int) -> DemoStore:
    from .api.keys import ApiKeys

    demo = DemoStore(
        "meetings",
        f"sqlite:///{directory / 'meetings.db'}",
        port,
        secrets.token_urlsafe(32),
        MEETINGS_PEOPLE,
        directory / "meetings-jwt-secret",
    )
    with Store(demo.url) as store:
        store.init(policies=[policy_file("meetings.yaml")])
        alice, bob, carol, dan, erin, gina = (p.sub for p in MEETINGS_PEOPLE)
        for person in (alice, bob, carol, dan):
            store.add_member(person, "acme", actor="demo")
        # A guest from another organisation: her own organisation's off caps her part of
        # acme's recordings; acme's summary switch decides acme's recordings for her too.
        store.add_member(gina, "globex", actor="demo")
        store.set_account("globex", "ai.training", "off", actor="demo")
        store.give_consent(gina, "ai.training", ["content"], method="preference-centre")
        store.set_feature("acme", "ai.feature.meeting_summary", True, actor=alice)
        store.set_account("acme", "improvement", "members_choose", actor=alice)
        method = "preference-centre"
        store.give_consent(alice, "ai.training", ["content"], method=method, language="en")
        store.give_consent(bob, "ai.training", ["content"], method=method, language="en")
        store.give_consent(bob, "improvement", ["content"], method=method, language="en")
        store.refuse_consent(carol, "ai.training", ["content"], method=method, language="fr")
        store.give_consent(erin, "ai.training", ["content"], method=method, language="id")
        store.give_consent(erin, "improvement", ["content"], method=method, language="id")
        store.withdraw_consent(erin, "improvement", ["content"], method=method, language="id")
        demo.service_key = ApiKeys(store).create("demo-pipeline", "service").secret
        demo.admin_key = ApiKeys(store).create("demo-operator", "platform_admin").secret
        demo.notes.extend(gate_demo_dataset(store, directory))
    return demo


def write_manifest(path: Path) -> int:
    """A synthetic training manifest: one row per meeting recording, with its participants
    and the account it belongs to (its owner's organisation; none for a solo user)."""
    subjects = [p.sub for p in MEETINGS_PEOPLE]
    rows = []
    categories = ("content.audio", "content.transcript", "content.video", "content.chat")
    for i in range(48):
        owner = subjects[i % len(subjects)]
        others = [s for s in subjects if s != owner][: i % 3]
        labels = ["health"] if i % 16 == 5 else []
        rows.append(
            {
                "item_id": f"rec-{i:04d}",
                "subject_ids": json.dumps([owner, *others]),
                "category": categories[i % len(categories)],
                "labels": json.dumps(labels),
                "account": HOME_ACCOUNT.get(owner, ""),
                "uri": f"s3://meetings-demo/recordings/rec-{i:04d}.opus",
            }
        )
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def gate_demo_dataset(store: Store, directory: Path) -> list[str]:
    """Gate the synthetic manifest into a dataset and register a model on it."""
    manifest = directory / "manifest.csv"
    count = write_manifest(manifest)
    out = directory / "datasets" / "meetings-asr-v1"
    result = store.gate(manifest, purpose="ai.training", dataset_name="meetings-asr-v1", out=out)
    model = store.register_model("meetings-asr", [result.dataset_id], version="1")
    return [
        f"gated {manifest} ({count} rows) into dataset meetings-asr-v1 ({result.dataset_id}): "
        f"{result.allowed} items allowed, {result.excluded} excluded",
        f"registered model {model.name} {model.version} ({model.id}) trained on it",
    ]


def build_music(directory: Path, port: int) -> DemoStore:
    demo = DemoStore(
        "music",
        f"sqlite:///{directory / 'music.db'}",
        port,
        secrets.token_urlsafe(32),
        MUSIC_PEOPLE,
        directory / "music-jwt-secret",
    )
    with Store(demo.url) as store:
        store.init(policies=[policy_file("music.yaml")])
        artist = MUSIC_PEOPLE[0].sub
        store.object(artist, "improvement", ["service_data"])
    return demo


def build(directory: Path, port: int = 8000, music_port: int = 8001) -> list[DemoStore]:
    """Build the demo stores fresh under ``directory``."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    stores = [build_meetings(directory, port), build_music(directory, music_port)]
    for demo in stores:
        demo.secret_file.write_text(demo.secret + "\n", encoding="utf-8")
        demo.secret_file.chmod(0o600)
    return stores


def describe(stores: list[DemoStore], host: str) -> str:
    lines = ["consentry demo", ""]
    for demo in stores:
        base = f"http://{host}:{demo.port}"
        lines.append(f"{demo.name}: {base}  (store {demo.url}; API docs {base}/docs)")
        for note in demo.notes:
            lines.append(f"  {note}")
        lines.append(f"  sign-in links (valid {LINK_DAYS} days):")
        for person in demo.people:
            lines.append(f"    {person.sub} — {person.note}:")
            lines.append(f"      {demo.link(host, person)}")
        if demo.service_key:
            lines.append("  service API key (for your backend or curl):")
            lines.append(f"    {demo.service_key}")
            lines.append(
                f"    curl -s -H 'Authorization: Bearer {demo.service_key}' "
                f"-H 'Content-Type: application/json' {base}/v1/decisions "
                """-d '{"subject": "bob@acme.example", "purpose": "ai.training", """
                """"category": "content.audio"}'"""
            )
        if demo.admin_key:
            lines.append("  platform_admin API key (publishes policies, verifies the ledger):")
            lines.append(f"    {demo.admin_key}")
        lines.append(
            f"  more tokens: CONSENTRY_JWT_SECRET=$(cat {demo.secret_file}) consentry token SUB"
        )
        lines.append("")
    return "\n".join(lines)


class PortBusy(Exception):
    """A port the demo cannot listen on, and why, in words for the person who ran it."""


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, for uvicorn to serve on. Taking the port
    here, before anything is built, is the check: no window in which another program can take
    it between a test and the server starting."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise PortBusy(f"cannot listen on {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    # As uvicorn does: a port left in TIME_WAIT by a demo just stopped can be reused, while a
    # port another program listens on still refuses (EADDRINUSE).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortBusy(
                f"port {port} on {host} is busy: another program is listening on it "
                "(perhaps another `make demo`)"
            ) from None
        if exc.errno == errno.EACCES:
            raise PortBusy(f"port {port} on {host} needs privileges this user lacks") from None
        raise PortBusy(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def take_ports(host: str, ports: list[int]) -> list[socket.socket]:
    """A listening socket for each port, or :class:`PortBusy` naming the first that is not
    free (the others are let go)."""
    if len(set(ports)) != len(ports):
        raise PortBusy(f"the two services need two different ports, not {ports[0]} twice")
    taken: list[socket.socket] = []
    try:
        for port in ports:
            taken.append(listen(host, port))
    except PortBusy:
        for sock in taken:
            sock.close()
        raise
    return taken


def how_to_choose(port: int) -> str:
    other = port + 100 if port + 101 <= 65535 else 8100
    return (
        f"Choose other ports: `make demo PORT={other}` (the music service takes the next "
        f"port, {other + 1}), or `python -m consentry.demo --port {other} "
        f"--music-port {other + 1}`."
    )


async def serve(stores: list[DemoStore], host: str, sockets: list[socket.socket]) -> None:
    import uvicorn

    from .api import Settings, create_app

    servers = []
    for demo in stores:
        settings = Settings(
            database_url=demo.url,
            jwt_secret=demo.secret,
            session_cookie=f"consentry_{demo.name}_session",
        )
        config = uvicorn.Config(
            create_app(settings), host=host, port=demo.port, log_level="warning"
        )
        servers.append(uvicorn.Server(config))
    await asyncio.gather(
        *(s.serve(sockets=[sock]) for s, sock in zip(servers, sockets, strict=True))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m consentry.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dir", type=Path, default=Path("demo"), help="where to build the stores")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="the meetings service")
    parser.add_argument(
        "--music-port", type=int, default=None, help="the music service (default: --port + 1)"
    )
    parser.add_argument("--no-serve", action="store_true", help="build and print, then exit")
    args = parser.parse_args(argv)
    music_port = args.port + 1 if args.music_port is None else args.music_port
    for port in (args.port, music_port):
        if not 1 <= port <= 65535:
            parser.error(f"port {port} is not a port number: choose one from 1024 to 65535")
    sockets: list[socket.socket] = []
    if not args.no_serve:
        try:
            sockets = take_ports(args.host, [args.port, music_port])
        except PortBusy as exc:
            print(f"consentry demo: {exc}.", file=sys.stderr)
            print(how_to_choose(args.port), file=sys.stderr)
            return 1
    try:
        stores = build(args.dir, args.port, music_port)
        text = describe(stores, args.host)
        (args.dir / "links.txt").write_text(text + "\n", encoding="utf-8")
        print(text, flush=True)
        if args.no_serve:
            return 0
        print("Serving until you press Ctrl-C.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(stores, args.host, sockets))
    finally:
        for sock in sockets:
            sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
