"""Developer commands behind `make up`, `make down` and `make demo`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from envbranch_testing import local

app = typer.Typer(add_completion=False, help="Local control plane and PostgreSQL for envbranch development.")
# Wide enough for the demo tables when output goes to a pipe or a CI log.
console = Console(width=None if Console().is_terminal else 160)


@app.command()
def up(state_dir: Path = typer.Option(..., help="where the processes keep their data"),
       node: bool = typer.Option(False, envvar="ENVBRANCH_NODE",
                                 help="also a local node that runs Pods (root; `make node` first)")) -> None:
    """Start (or find running) a control plane and PostgreSQL that stay up."""
    state = local.up(state_dir, node=node)
    console.print(f"[green]up[/]: API server {state['server']}, PostgreSQL {state['postgres']}")
    console.print(f"export KUBECONFIG={state['kubeconfig']}")


@app.command()
def down(state_dir: Path = typer.Option(..., help="the folder `up` used")) -> None:
    """Stop everything `up` started."""
    pids = local.down(state_dir)
    console.print(f"stopped {len(pids)} processes" if pids else "nothing was running")


@app.command()
def demo(keep: bool = typer.Option(False, help="leave the cluster and database running")) -> None:
    """Start everything, branch a sample application and show the result."""
    from envbranch_testing.demo import run_demo

    raise typer.Exit(run_demo(console, keep=keep))


if __name__ == "__main__":
    app()
