"""The command line against a ``postgresql://`` store: ``omnicron jobs ...`` with
``OMNICRON_STORE``, passwords from the environment or a file (never the URL), metrics of a
running node."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from omnicron_postgres.testing import CLI, Cluster, TempPostgres, cli_env


def omnicron(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=cli_env(**env), capture_output=True, text=True, timeout=60
    )


def test_jobs_commands_work_on_a_postgres_store_from_the_environment(pg_url: str) -> None:
    store = {"OMNICRON_STORE": pg_url}
    add = omnicron(
        "jobs", "add", "--id", "ping", "--name", "ping", "--every", "1h",
        "--session-id", "ops", "--message", "hi", "--json", **store,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    listed = omnicron("jobs", "list", "--json", **store)
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == ["ping"]
    assert omnicron("jobs", "disable", "ping", **store).returncode == 0
    shown = json.loads(omnicron("jobs", "show", "ping", "--json", **store).stdout)
    assert (shown.get("job") or shown)["status"] == "disabled"
    assert omnicron("jobs", "remove", "ping", **store).returncode == 0
    assert json.loads(omnicron("jobs", "list", "--json", **store).stdout) == []


@pytest.fixture
def password_role(pg_server: TempPostgres) -> Iterator[tuple[str, str]]:
    """A role that must authenticate with a password over TCP; (url, password)."""
    role, password = f"app_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:10]}"
    db = pg_server.create_database()
    dbname = db.rsplit("/", 1)[1]
    pg_server.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    pg_server.execute(f'GRANT ALL ON DATABASE "{dbname}" TO {role}')
    pg_server.execute(f"GRANT ALL ON SCHEMA public TO {role}", database=dbname)
    pg_server.execute(f'ALTER DATABASE "{dbname}" OWNER TO {role}')
    hba = pg_server.data / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + original)
    pg_server.execute("SELECT pg_reload_conf()")
    try:
        yield f"postgresql://{role}@127.0.0.1:{pg_server.port}/{dbname}", password
    finally:
        hba.write_text(original)
        pg_server.execute("SELECT pg_reload_conf()")


def test_passwords_come_from_the_environment_or_a_file_never_the_url(
    password_role: tuple[str, str], tmp_path: Path
) -> None:
    url, password = password_role
    # no password: refused by the server, and the error says so
    denied = omnicron("jobs", "list", "--store", url)
    assert denied.returncode != 0 and "password" in denied.stderr.lower()
    # PGPASSWORD (libpq's own variable); a write creates the store (reads never do)
    ok = omnicron(
        "jobs", "add", "--id", "pw", "--name", "pw", "--every", "1h",
        "--session-id", "s", "--message", "m", "--store", url, PGPASSWORD=password,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    # a password file named in the store options of the config
    secret = tmp_path / "pg-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    config = tmp_path / "omnicron.toml"
    config.write_text(
        f'[scheduler]\nstore = "{url}"\nstore_options = {{ password_file = "{secret}" }}\n'
    )
    ok = omnicron("jobs", "list", "--json", "-c", str(config))
    assert ok.returncode == 0, ok.stderr
    assert [j["id"] for j in json.loads(ok.stdout)] == ["pw"]
    # in the URL: refused before connecting, and the password is not repeated
    with_pw = url.replace("@", f":{password}@")
    refused = omnicron("jobs", "list", "--store", with_pw)
    assert refused.returncode != 0
    assert password not in refused.stdout + refused.stderr
    assert "PGPASSWORD" in refused.stderr


def test_a_running_node_exports_its_store_metrics(cluster: Cluster) -> None:
    cluster.import_jobs(
        [
            {
                "id": "tick",
                "name": "tick",
                "schedule": {"cron": "* * * * * *"},
                "action": {"type": "send_message", "session_id": "s", "message": "m"},
            }
        ]
    )
    cluster.start(0, "--metrics-port", "0")
    log = cluster.dir / "node0-1.log"
    found: list[str] = []

    def metrics_url() -> bool:
        found[:] = re.findall(r"http://127\.0\.0\.1:\d+/metrics", log.read_text())
        return bool(found)

    cluster.wait_for(metrics_url, 30, "the metrics URL in the banner")
    cluster.wait_for(lambda: len(cluster.runs()) >= 2, 30, "two fires")
    with urllib.request.urlopen(found[0], timeout=10) as resp:
        text = resp.read().decode()
    claims = re.search(r"^omnicron_store_claimed_fires_total (\S+)$", text, re.M)
    assert claims is not None and float(claims.group(1)) >= 2
    for name in (
        "omnicron_store_claim_latency_seconds",
        "omnicron_store_leases_held",
        "omnicron_store_lease_losses_total",
        "omnicron_store_reaped_runs_total",
        "omnicron_store_notify_lag_seconds",
    ):
        assert re.search(rf"^{name} ", text, re.M), name
    assert cluster.stop_all() == {0: 0}


async def test_agent_tools_on_two_nodes_share_one_postgres_store(pg_url: str) -> None:
    from omnicron_core import Registry, Store, StoreConfig, get_plugin_manager
    from omnicron_core.skill import Skill, SkillConfig

    stores: list[Store] = []

    def node() -> Skill:
        reg = Registry(get_plugin_manager(), settings={"send_message": {"transport": "host"}})
        stores.append(Store(StoreConfig(url=pg_url), registry=reg))
        return Skill(SkillConfig(), registry=reg, store=stores[-1])

    a, b = node(), node()
    await a.init()
    await b.init()
    try:
        created = await a.call(
            "cron_create",
            json.dumps(
                {
                    "name": "standup",
                    "schedule_cron": "0 9 * * *",
                    "action_type": "send_message",
                    "session_id": "alice",
                    "message": "standup",
                }
            ),
            principal="me",
        )
        assert not created.is_error, created.content
        job_id = created.content["id"]
        listed = await b.call("cron_list", "{}", principal="me")
        assert [j["id"] for j in listed.content] == [job_id]
        assert not (
            await b.call("cron_disable", json.dumps({"id": job_id}), principal="me")
        ).is_error
        got = await a.call("cron_get", json.dumps({"id": job_id}), principal="me")
        assert got.content["status"] == "disabled"  # a's view is not a stale cached copy
    finally:
        await a.close()
        await b.close()
        for store in stores:  # the skill stops its scheduler; the store is the caller's
            await store.close()


async def test_omnicron_mcp_over_stdio_uses_the_postgres_store_from_the_environment(
    pg_url: str, tmp_path: Path
) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=CLI[0],
        args=[*CLI[1:], "mcp", "--timezone", "UTC", "--skill-setting", "min_interval=0"],
        cwd=str(tmp_path),
        env=cli_env(OMNICRON_STORE=pg_url),
    )
    with (tmp_path / "server.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as streams, ClientSession(*streams) as s:
            await s.initialize()
            made = await s.call_tool(
                "cron_create",
                {
                    "name": "from-mcp",
                    "schedule_interval": "1h",
                    "action_type": "send_message",
                    "session_id": "s",
                    "message": "m",
                },
            )
            assert not made.is_error, made.content
    # the job is in the shared database, where any node and the CLI see it
    listed = omnicron("jobs", "list", "--json", OMNICRON_STORE=pg_url)
    assert [j["name"] for j in json.loads(listed.stdout)] == ["from-mcp"], listed.stderr
