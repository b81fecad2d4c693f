"""The edge's Envoy config for a container deployment (deploy/compose.yaml, helm/mockex).

mockex.edge renders envoy/envoy.yaml for one machine: upstreams on 127.0.0.1, files read from
where `make run` wrote them. In a cluster the gateway and stream_svc are other hosts and Envoy
reads its files from a mounted directory, so this renders the same config with mockex.edge and
changes only that: the two clusters resolve a host name (STRICT_DNS; behind a headless Service
Envoy sees every gateway pod and spreads requests over them, not one connection per Envoy) and
every file path points into `--config-dir`. The files Envoy reads (descriptor set, Lua filter,
the web terminal's build) are copied beside envoy.yaml, flat, so the output directory is what
gets mounted there (in the chart: one ConfigMap).

    python -m mockex.render_edge --out build/deploy/edge-compose \\
        --gateway gateway:50051 --stream-ws stream:50055
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

import yaml

from mockex import edge
from mockex.private import write_private

CONFIG_DIR_DEFAULT = Path("/etc/mockex-edge")
"""Where the deployments mount the rendered directory in the Envoy container."""
UPSTREAM_CLUSTERS = ("gateway", "stream_ws")
"""The clusters of envoy/envoy.yaml that point at our services (edge.render: 127.0.0.1)."""


def parse_address(text: str) -> tuple[str, int]:
    """host:port -> (host, port); the port must be a number."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port")
    return host, int(port)


def point_clusters(config: dict, upstreams: dict[str, tuple[str, int]]) -> None:
    """Give each cluster in `upstreams` that single DNS-resolved endpoint."""
    clusters = {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}
    missing = set(upstreams) - set(clusters)
    if missing:
        raise ValueError(f"envoy/envoy.yaml has no cluster {sorted(missing)}")
    for name, (host, port) in upstreams.items():
        cluster = clusters[name]
        cluster["type"] = "STRICT_DNS"
        cluster["load_assignment"]["endpoints"] = [
            {
                "lb_endpoints": [
                    {
                        "endpoint": {
                            "address": {"socket_address": {"address": host, "port_value": port}}
                        }
                    }
                ]
            }
        ]


def flat_name(source: Path) -> str:
    """A file name for `source` in the one flat directory (a ConfigMap has no folders):
    its path under the repository with `/` as `.`, e.g. build.web.assets.index-1a2b.js."""
    try:
        relative = source.resolve().relative_to(edge.REPO_ROOT)
    except ValueError:
        relative = Path(source.name)
    return ".".join(relative.parts)


def relocate_files(node: object, config_dir: Path, out: Path) -> None:
    """Copy every file the config names (`filename:`, e.g. the web terminal's, read by Envoy
    at load) into `out` under a flat name, and name it as `config_dir` will hold it."""
    if isinstance(node, list):
        for item in node:
            relocate_files(item, config_dir, out)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "filename" and isinstance(value, str):
                source = Path(value)
                if source.parent != config_dir:
                    shutil.copyfile(source, out / flat_name(source))
                    node[key] = str(config_dir / flat_name(source))
            else:
                relocate_files(value, config_dir, out)


def render_for_deployment(
    config: edge.EdgeConfig,
    upstreams: dict[str, tuple[str, int]],
    out: Path,
    config_dir: Path = CONFIG_DIR_DEFAULT,
) -> Path:
    """envoy.yaml and every file it reads into `out` (emptied first), with paths as seen from
    `config_dir`."""
    out.mkdir(parents=True, exist_ok=True)
    old = [path for path in out.iterdir()]
    if old and not (out / "envoy.yaml").is_file():
        raise FileExistsError(f"{out} is not empty and holds no envoy.yaml: not ours to replace")
    for path in old:  # a previous rendering: its web files may have other (hashed) names
        path.unlink()
    mapping = edge.rest_mapping(config.descriptor_set)
    write_private(out / edge.DESCRIPTOR_FILE, mapping.descriptor_set)
    write_private(out / edge.LUA_FILE, edge.render_lua(mapping).encode())
    rendered = yaml.safe_load(edge.render(config, mapping, config_dir))
    relocate_files(rendered, config_dir, out)
    point_clusters(rendered, upstreams)
    path = out / "envoy.yaml"
    header = "# Rendered by `python -m mockex.render_edge` from envoy/envoy.yaml: do not edit.\n"
    write_private(path, (header + yaml.safe_dump(rendered, sort_keys=False)).encode())
    # Envoy runs under another uid than the renderer; nothing in here is secret.
    for file in out.iterdir():
        file.chmod(0o644)
    out.chmod(0o755)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=CONFIG_DIR_DEFAULT,
        help=f"where Envoy finds that directory (default {CONFIG_DIR_DEFAULT})",
    )
    parser.add_argument("--gateway", type=parse_address, required=True, help="gateway host:port")
    parser.add_argument(
        "--stream-ws", type=parse_address, required=True, help="stream_svc WebSocket host:port"
    )
    defaults = edge.EdgeConfig()
    parser.add_argument("--port", type=int, default=defaults.port, help="Envoy's listener")
    parser.add_argument(
        "--cors-origin", action="append", default=[], help="an extra allowed origin (repeatable)"
    )
    args = parser.parse_args()
    config = replace(
        defaults,
        port=args.port,
        cors_origins=tuple(args.cors_origin),
        gateway_port=args.gateway[1],
        stream_ws_port=args.stream_ws[1],
    )
    upstreams = dict(zip(UPSTREAM_CLUSTERS, (args.gateway, args.stream_ws), strict=True))
    print(render_for_deployment(config, upstreams, args.out, args.config_dir))


if __name__ == "__main__":
    main()
