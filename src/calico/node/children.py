"""The processes calico-node supervises, as data (pure).

In: `NodeSettings` and the supervisor's environment. Out: one `ChildSpec` per child:

    felix   calico-node -felix      always; exit 129 ("restart me") restarts it at once
    confd   calico-node -confd      backend bird only (or CALICO_NODE_CONFD_CMD)
    bird    bird -R -f -c bird.cfg -s bird.ctl
                                    backend bird only, started once the renderer has written bird.cfg;
                                    -R: graceful restart recovery (kernel routes kept until peers resent);
                                    stopped with `graceful restart` (peers keep its routes meanwhile)

`$CALICO_RUN_DIR/hold/<child>` holds a child: while that file exists the supervisor does not start it (the lab's
fault verbs, or an operator pausing BIRD, create it and stop the child by its pid file). With CALICO_LOG_DIR each
child writes to `<dir>/<child>.log`.

Every child gets the supervisor's environment plus the values they must agree on: NODENAME (as resolved),
CALICO_CONFD_DIR and CALICO_RUN_DIR, and for Felix FELIX_FELIXHOSTNAME=<node name> and FELIX_HEALTHENABLED=true
unless set (the -felix-live/-felix-ready probes need Felix's health server, as in Calico's manifests).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from calico.bgp.bird import BirdSocket, bird_command, graceful_restart
from calico.node.settings import NodeSettings

__all__ = ["FELIX_RESTART_CODE", "ChildSpec", "node_children", "self_command"]

FELIX_RESTART_CODE = 129


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    restart_now_codes: frozenset[int] = frozenset()
    start_when: Callable[[], bool] | None = None  # polled until true before each start
    waiting_for: str = ""  # what start_when waits for, for the log
    pid_file: Path | None = None  # written by the supervisor (None: the child writes its own, or none)
    graceful_stop: Callable[[], Awaitable[object]] | None = None  # asked first when stopping, before SIGTERM
    hold_file: Path | None = None  # while it exists the child is not (re)started: an operator's "stop"
    log_file: Path | None = None  # the child's stdout and stderr (None: the supervisor's own)


def self_command() -> tuple[str, ...]:
    """How to run this program again: the `calico-node` script beside the interpreter, else `python -m`."""
    script = Path(sys.executable).parent / "calico-node"
    return (str(script),) if script.exists() else (sys.executable, "-m", "calico.node")


def node_children(settings: NodeSettings, env: Mapping[str, str]) -> list[ChildSpec]:
    base = {
        **env,
        "NODENAME": settings.nodename,
        "CALICO_CONFD_DIR": str(settings.confd_dir),
        "CALICO_RUN_DIR": str(settings.run_dir),
    }
    felix_env = {"FELIX_FELIXHOSTNAME": settings.nodename, "FELIX_HEALTHENABLED": "true", **base}
    me = self_command()
    run = settings.run_dir

    def files(name: str) -> dict[str, Path | None]:
        log_file = settings.log_dir / f"{name}.log" if settings.log_dir else None
        return {"hold_file": run / "hold" / name, "log_file": log_file}

    children = [
        ChildSpec("felix", (*me, "-felix"), felix_env, frozenset({FELIX_RESTART_CODE}), pid_file=run / "felix.pid",
                  **files("felix"))
    ]
    if settings.backend != "bird":
        return children
    children.append(ChildSpec("confd", settings.confd_cmd or (*me, "-confd"), base, pid_file=run / "confd.pid",
                              **files("confd")))
    cfg = settings.bird_config
    control = BirdSocket(settings.bird_socket)
    children.append(
        ChildSpec(
            "bird",
            tuple(bird_command(cfg, settings.bird_socket, settings.bird_cmd)),
            base,
            pid_file=run / "bird.pid",  # written by the supervisor, so it goes when BIRD goes (even on SIGKILL)
            start_when=cfg.exists,
            waiting_for=f"the renderer to write {cfg}",
            # Peers keep this host's routes while it is away (a plain SIGTERM would make them withdraw).
            graceful_stop=lambda: graceful_restart(control),
            **files("bird"),
        )
    )
    return children
