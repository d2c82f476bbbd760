"""calicoctl's commands: create, apply, replace, delete, get, patch, label, validate, version; `ipam` lives in
`calicoctl/ipam.py`, `node` in `calicoctl/node.py`, `explain` in `calicoctl/explain.py`, `flows` in
`calicoctl/flows.py`."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from calico import __version__
from calico.calicoctl import tables
from calico.calicoctl.edit import LabelError, merge_patch, remove_label, set_label
from calico.calicoctl.explain import explain
from calico.calicoctl.flows import flows
from calico.calicoctl.ipam import ipam, remove_node_data, remove_pool_data
from calico.calicoctl.node import node as node_commands
from calico.calicoctl.session import fail, open_kv
from calico.datastore.store import AlreadyExists, NotFound, ResourceStore, StoreError, describe
from calico.resources import KINDS, Resource, ResourceError, dump_documents, kind_for, load_documents, parse_resource

T = TypeVar("T")
OUTPUTS = ("ps", "wide", "yaml", "json", "name")


@dataclass
class Ctx:
    config: str | None


@asynccontextmanager
async def open_store(ctx: Ctx) -> Any:
    async with open_kv(ctx.config) as kv:
        store = ResourceStore(kv)
        await store.ensure_default_tier()
        yield store


def read_manifest(filename: str) -> list[Resource]:
    """All documents of a file (or stdin) validated up front: any invalid document means nothing is written."""
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
    except OSError as e:
        fail(f"Failed to read {filename}: {e.strerror}")
    try:
        resources = load_documents(text, source=filename)
    except ResourceError as e:
        fail(f"Failed to execute command: invalid resource(s) in {filename}, nothing was changed:\n{e}")
    if not resources:
        fail(f"No resources specified in {filename}")
    return resources


def with_namespace(res: Resource, namespace: str | None) -> Resource:
    """`-n` fills in the namespace of namespaced resources; a conflicting one is an error."""
    if not res.NAMESPACED:
        return res
    current = res.metadata.namespace
    if namespace and current and current != namespace:
        fail(
            f"{describe(res.KIND, res.metadata.name, current)}: namespace {current!r} in the file does not "
            f"match --namespace {namespace!r}"
        )
    ns = current or namespace or "default"
    return res.model_copy(update={"metadata": res.metadata.model_copy(update={"namespace": ns})})


def report(verb: str, done: list[Resource], errors: list[str], total: int) -> None:
    kinds = Counter(r.KIND for r in done)
    for err in errors:
        click.echo(f"Failed to {verb} resource: {err}", err=True)
    if done:
        what = f"'{next(iter(kinds))}' resource(s)" if len(kinds) == 1 else "resource(s)"
        past = {"apply": "applied", "create": "created", "replace": "replaced", "delete": "deleted"}[verb]
        if errors:
            click.echo(f"Partial success: {past} {len(done)} out of {total} resource(s)")
        else:
            click.echo(f"Successfully {past} {len(done)} {what}")
    if errors:
        sys.exit(1)


async def each(
    ctx: Ctx, items: Sequence[T], op: Callable[[ResourceStore, T], Awaitable[Resource | None]]
) -> tuple[list[Resource], list[str]]:
    """Run `op` on every item, collecting successes and per-resource errors (one bad item stops nothing)."""
    done, errors = [], []
    async with open_store(ctx) as store:
        for res in items:
            try:
                out = await op(store, res)
            except (StoreError, ResourceError) as e:
                errors.append(str(e))
            else:
                if out is not None:
                    done.append(out)
    return done, errors


# --- the command group ------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", envvar="CALICOCTL_CONFIG", default=None, help="CalicoAPIConfig file.")
@click.option("-l", "--log-level", default="warning", help="Log level (debug, info, warning, error).")
@click.pass_context
def cli(click_ctx: click.Context, config: str | None, log_level: str) -> None:
    """Manage Calico resources."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(message)s", stream=sys.stderr)
    click_ctx.obj = Ctx(config)


file_option = click.option("-f", "--filename", required=True, help="Manifest file, or - for stdin.")
ns_option = click.option("-n", "--namespace", default=None, help="Namespace for namespaced resources.")


@cli.command()
@file_option
@ns_option
@click.option("--skip-exists", is_flag=True, help="Do not fail for resources that already exist.")
@click.pass_obj
def create(ctx: Ctx, filename: str, namespace: str | None, skip_exists: bool) -> None:
    """Create resources from a file; fails for any that exist."""
    resources = [with_namespace(r, namespace) for r in read_manifest(filename)]

    async def op(store: ResourceStore, res: Resource) -> Resource | None:
        try:
            return await store.create(res)
        except AlreadyExists:
            if skip_exists:
                return res
            raise

    report("create", *run_ops(ctx, resources, op), total=len(resources))


@cli.command()
@file_option
@ns_option
@click.pass_obj
def apply(ctx: Ctx, filename: str, namespace: str | None) -> None:
    """Create or update resources from a file."""
    resources = [with_namespace(r, namespace) for r in read_manifest(filename)]

    async def op(store: ResourceStore, res: Resource) -> Resource:
        return (await store.apply(res))[0]

    report("apply", *run_ops(ctx, resources, op), total=len(resources))


@cli.command()
@file_option
@ns_option
@click.pass_obj
def replace(ctx: Ctx, filename: str, namespace: str | None) -> None:
    """Replace existing resources (honouring metadata.resourceVersion when given)."""
    resources = [with_namespace(r, namespace) for r in read_manifest(filename)]
    report("replace", *run_ops(ctx, resources, ResourceStore.update), total=len(resources))


@cli.command()
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option("-f", "--filename", default=None, help="Manifest file naming the resources, or -.")
@ns_option
@click.option("--skip-not-exists", is_flag=True, help="Do not fail for resources that do not exist.")
@click.pass_obj
def delete(
    ctx: Ctx, kind: str | None, names: tuple[str, ...], filename: str | None, namespace: str | None,
    skip_not_exists: bool,
) -> None:
    """Delete resources named on the command line or in a file."""
    targets = targets_from(kind, names, filename, namespace)

    async def op(store: ResourceStore, ref: Ref) -> Resource | None:
        try:
            if ref.kind == "Node":  # as Calico does: the node's endpoints, addresses and block affinities go first
                await remove_node_data(store, ref.name)
            elif ref.kind == "IPPool":  # as Calico does: hosts let go of the pool's blocks first
                await remove_pool_data(store, ref.name)
            return await store.delete(ref.kind, ref.name, ref.namespace)
        except NotFound:
            if skip_not_exists:
                return None
            raise

    report("delete", *run_ops(ctx, targets, op), total=len(targets))


def run_ops(
    ctx: Ctx, items: Sequence[T], op: Callable[[ResourceStore, T], Awaitable[Resource | None]]
) -> tuple[list[Resource], list[str]]:
    return asyncio.run(each(ctx, items, op))


@dataclass(frozen=True)
class Ref:
    """What a command names: a kind, a name and (for namespaced kinds) a namespace."""

    kind: str
    name: str
    namespace: str | None

    @classmethod
    def named(cls, kind: str, name: str, namespace: str | None) -> Ref:
        try:
            rcls = kind_for(kind)
        except ResourceError as e:
            fail(str(e))
        return cls(rcls.KIND, name, (namespace or "default") if rcls.NAMESPACED else None)

    @classmethod
    def of(cls, res: Resource) -> Ref:
        return cls(res.KIND, res.metadata.name, res.metadata.namespace)


def targets_from(kind: str | None, names: tuple[str, ...], filename: str | None, namespace: str | None) -> list[Ref]:
    if filename:
        if kind:
            fail("Give either -f FILE or KIND NAME..., not both")
        return [Ref.of(with_namespace(r, namespace)) for r in read_manifest(filename)]
    if not kind or not names:
        fail("Specify -f FILE, or a resource kind and one or more names")
    return [Ref.named(kind, n, namespace) for n in names]


@cli.command()
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option("-f", "--filename", default=None, help="Manifest file naming the resources, or -.")
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default="ps", show_default=True)
@ns_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List namespaced resources in every namespace.")
@click.pass_obj
def get(
    ctx: Ctx, kind: str | None, names: tuple[str, ...], filename: str | None, output: str,
    namespace: str | None, all_namespaces: bool,
) -> None:
    """Show resources of a kind (all of them, or those named)."""
    if filename:
        refs = targets_from(None, (), filename, namespace)
    elif not kind:
        fail("Specify a resource kind (e.g. ippools, globalnetworkpolicies) or -f FILE")
    else:
        try:
            cls = kind_for(kind)
        except ResourceError as e:
            fail(str(e))
        refs = [Ref.named(cls.KIND, n, namespace) for n in names]
    errors: list[str] = []

    async def fetch() -> list[Resource]:
        async with open_store(ctx) as store:
            if not refs:
                ns = None if all_namespaces else (namespace or "default")
                return await store.list(cls.KIND, ns)
            found = []
            for ref in refs:
                try:
                    found.append(await store.get(ref.kind, ref.name, ref.namespace))
                except NotFound as e:
                    errors.append(str(e))
            return found

    found = asyncio.run(fetch())
    single = bool(refs) and len(refs) == 1
    listed_kind = None if filename else cls.KIND
    print_resources(found, output, single=single, all_namespaces=all_namespaces and not refs, kind=listed_kind)
    for err in errors:
        click.echo(err, err=True)
    if errors:
        sys.exit(1)


def print_resources(
    found: list[Resource], output: str, single: bool, all_namespaces: bool, kind: str | None = None
) -> None:
    if output in ("yaml", "json"):
        if found:
            click.echo(dump_documents(found, output, as_list=not single), nl=False)
        elif not single:
            click.echo(dump_documents([], output, as_list=True), nl=False)
        return
    if output == "name":
        for r in found:
            click.echo(f"{r.KIND.lower()}/{r.metadata.name}")
        return
    by_kind: dict[str, list[Resource]] = {kind: []} if kind else {}  # a header even when nothing matched
    for r in found:
        by_kind.setdefault(r.KIND, []).append(r)
    for k, items in by_kind.items():
        namespaced = all_namespaces and KINDS[k].NAMESPACED
        click.echo(tables.render(k, [r.to_dict() for r in items], output == "wide", namespaced), nl=False)


@cli.command()
@click.argument("kind")
@click.argument("name")
@click.option("-p", "--patch", "patch_text", required=True, help="JSON (or YAML) merge patch.")
@ns_option
@click.pass_obj
def patch(ctx: Ctx, kind: str, name: str, patch_text: str, namespace: str | None) -> None:
    """Apply a merge patch to one resource."""
    try:
        body = yaml.safe_load(patch_text)
    except yaml.YAMLError as e:
        fail(f"Invalid patch: {e}")
    if not isinstance(body, dict):
        fail("Invalid patch: it must be a JSON object")
    edit_one(ctx, kind, name, namespace, lambda doc: merge_patch(doc, body), "patched")


@cli.command()
@click.argument("kind")
@click.argument("name")
@click.argument("label", required=False)
@click.option("--overwrite", is_flag=True, help="Replace the value of an existing label.")
@click.option("--remove", "remove_key", default=None, help="Remove this label key.")
@ns_option
@click.pass_obj
def label(
    ctx: Ctx, kind: str, name: str, label: str | None, overwrite: bool, remove_key: str | None,
    namespace: str | None,
) -> None:
    """Set (KEY=VALUE) or --remove a label on one resource."""
    if remove_key:
        edit_one(
            ctx, kind, name, namespace, lambda doc: remove_label(doc, remove_key), f"removed label {remove_key} from"
        )
        return
    if not label or "=" not in label:
        fail("Specify a label as KEY=VALUE, or --remove KEY")
    key, value = label.split("=", 1)
    edit_one(ctx, kind, name, namespace, lambda doc: set_label(doc, key, value, overwrite), f"set label {key} on")


def edit_one(
    ctx: Ctx, kind: str, name: str, namespace: str | None, change: Callable[[dict[str, Any]], dict[str, Any]],
    did: str,
) -> None:
    ref = Ref.named(kind, name, namespace)

    async def go() -> Resource:
        async with open_store(ctx) as store:
            try:
                current = await store.get(ref.kind, ref.name, ref.namespace)
                edited = parse_resource(change(current.to_dict()))
                return await store.update(edited)
            except (StoreError, ResourceError, LabelError) as e:
                fail(f"Failed to update {describe(ref.kind, ref.name, ref.namespace)}: {e}")

    out = asyncio.run(go())
    click.echo(f"Successfully {did} {out.KIND} {describe(out.KIND, out.metadata.name, out.metadata.namespace)}")


@cli.command()
@file_option
def validate(filename: str) -> None:
    """Check a manifest without touching the datastore."""
    resources = read_manifest(filename)
    click.echo(f"Successfully validated {len(resources)} resource(s)")


@cli.command()
@click.pass_obj
def version(ctx: Ctx) -> None:
    """Client version, and the cluster's version from ClusterInformation."""
    click.echo(f"Client Version:    v{__version__}")

    async def cluster() -> Resource | None:
        async with open_store(ctx) as store:
            try:
                return await store.get("ClusterInformation", "default")
            except NotFound:
                return None

    info = asyncio.run(cluster())
    spec = info.to_dict().get("spec", {}) if info else {}
    click.echo(f"Cluster Version:   {spec.get('calicoVersion', 'unknown')}")
    click.echo(f"Cluster Type:      {spec.get('clusterType', 'unknown')}")


cli.add_command(ipam)
cli.add_command(explain)
cli.add_command(node_commands)
cli.add_command(flows)


def main() -> None:
    cli(prog_name="calicoctl")
