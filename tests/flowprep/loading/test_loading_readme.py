"""README's "Your own training loop" runs as printed, on the session's small shards (CPU, one epoch)."""
from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[3] / "README.md"


def _loop_code() -> str:
    section = README.read_text().split("## Your own training loop", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_loop_trains_a_model_on_the_shards(motion_data):
    code = _loop_code()
    # only the parts a reader fills in change: the folder, the device, the sizes of this tiny set
    for old, new in (('"/data/ucf101_flow"', repr(str(motion_data.shards))),
                     ('torch.device("cuda")', 'torch.device("cpu")'), ("range(10)", "range(1)"),
                     ("num_workers=4", "num_workers=0"), ("crop_size=224", "crop_size=32")):
        assert old in code, old
        code = code.replace(old, new)
    from flowprep.loading import load_items
    from flowprep.store.reader import ShardSet

    def label(k):
        return motion_data.classes.index(k.split("/")[0])
    labels = {k: label(k) for k in motion_data.train}
    test_items = load_items(ShardSet(motion_data.shards), [(k, label(k)) for k in motion_data.test[:2]])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(len(motion_data.classes)))
    seen = []
    namespace = {"my_labels": labels, "model": lambda x: seen.append(x.shape) or model(x), "test_items": test_items}
    exec(compile(code, str(README), "exec"), namespace)
    assert seen and all(s[1:] == (20, 32, 32) for s in seen) and namespace["loss"].isfinite()
    assert len(namespace["test"]) == 2 * 25 and namespace["scores"].shape == (2 * 10, len(motion_data.classes))
    # the last batch: positions 48 and 49, both of the second video, as the loop's unpacking names them
    assert namespace["video"].tolist() == [1, 1] and namespace["labels"].tolist() == [label(motion_data.test[1])] * 2


def test_the_loading_packages_plain_loop_runs_as_printed(motion_data):
    """Its docstring's loop (README points to it) lacked ``import torch``, named a folder the demo does not make
    and cut crops larger than the demo's frames."""
    import flowprep.loading

    code = flowprep.loading.__doc__.split("::", 1)[1]
    code = "\n".join(line[4:] for line in code.splitlines())
    assert '"runs/demo/shards"' in code
    code = code.replace('"runs/demo/shards"', repr(str(motion_data.shards))).replace("crop_size=56", "crop_size=40")
    namespace: dict = {}
    exec(compile(code, "flowprep/loading/__init__.py", "exec"), namespace)
    assert namespace["x"].dtype == torch.float32 and namespace["x"].shape[1:] == (20, 40, 40)
