"""Score fusion methods side by side on a dataset: the library behind ``medfuse eval``.

One module per job:

* :mod:`~medfuse.evaluation.methods`: what is compared (classical rules, GeSeNet weights,
  folders of fused images) and how the command line names it;
* :mod:`~medfuse.evaluation.run`: the loop that fuses and scores every pair, images as read
  and volumes slice by slice, recording per-item problems instead of stopping;
* :mod:`~medfuse.evaluation.aggregate`: means, spreads and the best method per metric;
* :mod:`~medfuse.evaluation.export`: the per-image CSV and the JSON document;
* :mod:`~medfuse.evaluation.report`: the Markdown report with box plots and example grids;
* :mod:`~medfuse.evaluation.request`: the whole ``medfuse eval`` command as one call
  (:func:`evaluate_files`): checks, evaluation, files.

Datasets are found by :func:`medfuse.io.layout.find_tasks`, the layout ``batch`` and
``train`` read too.

>>> from medfuse.io.layout import find_tasks
>>> from medfuse.evaluation import evaluate, parse_method, write_csv
>>> tasks = find_tasks("data/harvard", split="val", images_only=False)  # doctest: +SKIP
>>> result = evaluate(tasks, [parse_method("gff")], ["standard"])      # doctest: +SKIP
"""

from medfuse.evaluation.aggregate import Summary, best_methods, summarise
from medfuse.evaluation.export import csv_rows, to_json, write_csv, write_json
from medfuse.evaluation.methods import (
    FusedImages,
    MethodSpec,
    Runner,
    check_unique,
    fused_folder,
    load_runners,
    parse_fused,
    parse_method,
)
from medfuse.evaluation.report import check_report_dir, write_report
from medfuse.evaluation.request import EvalReport, EvalRequest, evaluate_files
from medfuse.evaluation.run import (
    ANATOMY_LEVEL,
    EvalResult,
    Example,
    ImageScore,
    Problem,
    evaluate,
    is_image_pair,
    other_label,
    parse_metrics,
    parse_profiles,
    read_fused,
)

__all__ = [
    "ANATOMY_LEVEL",
    "EvalReport",
    "EvalRequest",
    "EvalResult",
    "Example",
    "FusedImages",
    "ImageScore",
    "MethodSpec",
    "Problem",
    "Runner",
    "Summary",
    "best_methods",
    "check_report_dir",
    "check_unique",
    "csv_rows",
    "evaluate",
    "evaluate_files",
    "fused_folder",
    "is_image_pair",
    "load_runners",
    "other_label",
    "parse_fused",
    "parse_method",
    "parse_metrics",
    "parse_profiles",
    "read_fused",
    "summarise",
    "to_json",
    "write_csv",
    "write_json",
    "write_report",
]
