"""Former name of :mod:`medfuse.cli.options`, kept while command modules move over."""

from medfuse.cli.options import *  # noqa: F403
from medfuse.cli.options import (  # noqa: F401
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    ModalityOpt,
    VerboseOpt,
    WeightsOpt,
    console,
    fail,
    handle_errors,
    out,
)


def load_engine(weights, device, verbose, batch_size=8):  # type: ignore[no-untyped-def]
    from medfuse.cli.options import engine_loader

    return engine_loader(weights, device, verbose, batch_size)()
