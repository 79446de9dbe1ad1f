"""How FRNet may be pruned: SRNet's residual blocks are the removable units, FNet is kept whole.

Depth: only `srnet.resblocks.*` are offered as units. Width: SRNet's 64-channel feature stream
(conv_in -> every block -> conv_up) is one torch-pruning channel group; `srnet.conv_out` must keep
its 3 RGB outputs. FNet is protected by default (its flow feeds the warp, and the published study
prunes only SRNet); `frnet_layout(open_fnet=True)`, registered as `tecogan.frnet.open_fnet`, lets
width pruning reach FNet too, keeping only its 2-channel flow head fixed. Both name the runner
`tecogan.fast` (tecogan_plugin.fast.fast_runner), so latency targets time FRNet on its fast path.
"""

from __future__ import annotations

from prunekit.graph import Layout

RUNNER = "tecogan.fast"


def frnet_layout(open_fnet: bool = False) -> Layout:
    """The FRNet layout; `open_fnet=True` opens FNet for channel pruning (its flow output stays 2 channels)."""
    if open_fnet:
        return Layout(include=["srnet.resblocks.*"], channel_ignore=["fnet.flow.2", "srnet.conv_out"],
                      runner=RUNNER)
    return Layout(include=["srnet.resblocks.*"], protect=["fnet"], channel_ignore=["fnet", "srnet.conv_out"],
                  runner=RUNNER)


def register(registries) -> None:
    """Layouts `tecogan.frnet` (FNet protected) and `tecogan.frnet.open_fnet`."""
    registries.layouts.register("tecogan.frnet", frnet_layout())
    registries.layouts.register("tecogan.frnet.open_fnet", frnet_layout(open_fnet=True))
