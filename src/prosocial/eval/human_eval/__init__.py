"""Head-to-head human evaluation (paper §5.2, C.3, Table 4): blind pairwise tasks, a rater web page,
judgments in SQLite, and win / tie / lose aggregation with bootstrap intervals and Krippendorff's alpha."""

from prosocial.eval.human_eval.tasks import DIMENSIONS, Task, build_tasks, read_outputs

__all__ = ["DIMENSIONS", "Task", "build_tasks", "read_outputs"]
