"""How distinct are a pair's MINT keys? Distance from each test image to its nearest member.

    python benchmarks/key_distances.py PAIR

For the tapped entry maps pooled to 5x5, 7x7 and 14x14 (LayerNorm, as the head sees them): the
per-value squared distance from 1,000 test images to the nearest of 3,000 members, and the
Fourier kernel exp(-f^2 d / 2) it implies. A tiny kernel value means a sharp enough memory could tell
them apart; whether a head of finite size can is a separate question (benchmarks/README.md).
"""
import sys, torch; sys.path.insert(0,'.')
from amint.pair import AuditedPair
from amint.data import load_benchmark
from amint.splits import MembershipSplit
torch.set_num_threads(1)
p = AuditedPair.from_pretrained(sys.argv[1]).eval()
b = load_benchmark("fashion-mnist"); s = MembershipSplit.from_config(p.config.split)
xm = p.normalize(b.train_images[s.eval_members[:3000]]); xt = p.normalize(b.test_images[:1000])
with torch.no_grad():
    _, _, mm = p.forward_maps(xm); _, _, mt = p.forward_maps(xt)
for g in [5, 7, 14]:
    def feats(maps):
        f = torch.cat([torch.nn.functional.adaptive_avg_pool2d(m, g).flatten(1) for m in maps], 1)
        return torch.nn.functional.layer_norm(f, f.shape[1:])
    fm, ft = feats(mm), feats(mt)
    d = torch.cdist(ft, fm).pow(2) / fm.shape[1]   # per-dim squared distance
    nn = d.min(1).values
    print(g, fm.shape[1], "test->nearest member delta2: median", nn.median().item(), "10th pct", nn.quantile(0.1).item(), "1st pct", nn.quantile(0.01).item())
    for f in [20, 40, 80]:
        k = torch.exp(-f**2 * nn / 2)
        print("   f", f, "kernel to nearest member: median", k.median().item(), "90th pct", k.quantile(0.9).item())
