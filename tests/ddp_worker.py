"""Run under ``torchrun`` by tests/test_train.py: a few DDP steps on CPU (gloo), then each rank
writes a digest of its weights so the test can check that the ranks agree."""

import hashlib
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from clipmg.model import load_config
from clipmg.train.config import TrainConfig
from clipmg.train.data import build_data
from clipmg.train.loop import DistInfo
from clipmg.train.trainer import Trainer

data, out = sys.argv[1], Path(sys.argv[2])
d = DistInfo.from_env()
dist.init_process_group("gloo")
cfg = TrainConfig(data=data, out=str(out), epochs=1, batch_size=2, device="cpu", threads=1, lr_new=1e-3)
torch.set_num_threads(1)
trainer = Trainer(cfg, build_data(cfg, load_config(cfg.preset)), d)
summary = trainer.run()
h = hashlib.sha256()
for k, v in sorted(trainer.model.state_dict().items()):
    h.update(k.encode())
    h.update(v.detach().cpu().contiguous().numpy().tobytes())
(out / f"rank{d.rank}.digest").write_text(
    f"{h.hexdigest()} {summary['steps']} {trainer.world if hasattr(trainer, 'world') else d.world}\n"
)
dist.destroy_process_group()
