#!/usr/bin/env python3
"""Checks the soundnet library against the PyTorch reference (soundnet_torch.py), in float64.

  check_against_torch.py --driver BIN --workdir DIR [--only eval|train|length]

BIN: soundnet-reference (tests/reference/driver.cpp), the library driven without the programs.

Eval: every read-out of SoundNet-8 and SoundNet-5 for 20 s, 10 s and odd-length inputs
(relative L2 error <= 1e-4). Train: the first step's loss, gradients (<= 1e-3; a conv bias
that feeds a batch norm has an exact gradient of 0 and must be ~0), running statistics after
one step (<= 1e-4), Adam's first update, and the weight change after 3 steps (<= 5e-2).
Length: the minimum input length agrees with PyTorch's.
Exit status 0 when every check passes, 1 otherwise, 77 when PyTorch is missing.
"""
import argparse
import math
import os
import subprocess
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # the ctest wrapper reports exit 77 as skipped
    print(f"SKIPPED: the PyTorch reference needs python3-torch and numpy ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soundnet_torch as ref  # noqa: E402

torch.set_default_dtype(torch.float64)
RESULTS = []


def check(name, ok, detail):
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)


def rel_l2(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        return math.inf
    denom = np.linalg.norm(theirs)
    return float(np.linalg.norm(ours - theirs) / (denom if denom > 0 else 1.0))


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
    return p.stdout


def waveform(samples, seed):
    """Audio-like test signal in the network's input range: tones, chirp and noise, float32."""
    g = np.random.default_rng(seed)
    t = np.arange(samples) / 22050.0
    x = 60 * np.sin(2 * np.pi * 440 * t) + 30 * np.sin(2 * np.pi * (200 + 300 * t) * t)
    x += 20 * g.standard_normal(samples) * (1 + np.sin(2 * np.pi * 0.5 * t))
    return x.astype(np.float32)


def realistic_weights(arch, seed):
    """Weights scaled 1/sqrt(fan_in), random BN affine, and running statistics calibrated on
    audio so that every layer carries signal; float32-rounded."""
    torch.manual_seed(seed)
    net = ref.SoundNet(arch)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith("bn"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape))
            elif name.endswith("weight"):
                p.copy_(torch.randn(p.shape) / math.sqrt(p.shape[1] * p.shape[2]))
            else:
                p.copy_(0.1 * torch.randn(p.shape))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration pass
        net.train()
        net(torch.from_numpy(np.stack([waveform(441000, seed + 1), waveform(441000, seed + 2)])[:, None]).double())
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.momentum = 0.1
    return {k: v.astype(np.float32) for k, v in net.state_numpy().items()}


def check_eval(args):
    for arch in ("soundnet8", "soundnet5"):
        weights = realistic_weights(arch, 10 if arch == "soundnet8" else 20)
        wpath = os.path.join(args.workdir, f"{arch}-eval.safetensors")
        ref.write_safetensors(wpath, weights, {"architecture": arch})
        net = ref.SoundNet(arch)
        net.load_numpy(weights)
        net.eval()
        for samples in (441000, 220500, 300007):
            x = waveform(samples, samples)
            xpath = os.path.join(args.workdir, f"x{samples}.npy")
            np.save(xpath, x)
            outdir = os.path.join(args.workdir, f"{arch}-{samples}")
            run([args.driver, "extract", "--arch", arch, "--weights", wpath, "--input-npy", xpath, "--all-layers",
                 "--out", outdir])
            with torch.no_grad():
                taps = net(torch.from_numpy(x.astype(np.float64))[None, None])
            worst, worst_name = 0.0, ""
            for name, value in taps.items():
                path = os.path.join(outdir, name + ".npy")
                ours = np.load(path) if os.path.exists(path) else None
                err = math.inf if ours is None else rel_l2(ours, value[0].numpy())
                if err > worst:
                    worst, worst_name = err, name
                if not err <= 1e-4:
                    check(f"eval {arch} {samples} {name}", False, f"relative L2 error {err:.3g} > 1e-4")
            check(f"eval {arch} {samples} samples, {len(taps)} read-outs", worst <= 1e-4,
                  f"worst relative L2 error {worst:.3g} ({worst_name})")
            # one read-out at a time: the fused inference path (conv + BN + ReLU in one pass)
            worst, worst_name = 0.0, ""
            for name in ("conv1", "pool2", "conv4", f"{net.head_name}_objects", f"{net.head_name}_scenes"):
                path = os.path.join(outdir, f"fused-{name}.npy")
                run([args.driver, "extract", "--arch", arch, "--weights", wpath, "--input-npy", xpath, "--layer", name,
                     "--out", path])
                err = rel_l2(np.load(path), taps[name][0].numpy())
                if err > worst:
                    worst, worst_name = err, name
            check(f"eval {arch} {samples} samples, fused path", worst <= 1e-4,
                  f"worst relative L2 error {worst:.3g} ({worst_name})")


def make_batch(workdir, arch, batch, samples, seed):
    """A manifest of `batch` clips with random teacher distributions; returns tensors too."""
    steps = {"soundnet8": ref.SoundNet("soundnet8"), "soundnet5": ref.SoundNet("soundnet5")}[arch]
    with torch.no_grad():
        out_len = steps(torch.zeros(1, 1, samples))[f"{steps.head_name}_objects"].shape[2]
    g = np.random.default_rng(seed)
    rows, xs, tos, tss = ["audio,objects,scenes"], [], [], []
    for i in range(batch):
        x = waveform(samples, seed * 100 + i)
        to = torch.softmax(torch.from_numpy(2 * g.standard_normal((out_len, 1000))), 1).numpy().astype(np.float32)
        ts = torch.softmax(torch.from_numpy(2 * g.standard_normal((out_len, 401))), 1).numpy().astype(np.float32)
        for name, a in ((f"{arch}-clip{i}.npy", x), (f"{arch}-clip{i}-objects.npy", to), (f"{arch}-clip{i}-scenes.npy", ts)):
            np.save(os.path.join(workdir, name), a)
        rows.append(f"{arch}-clip{i}.npy,{arch}-clip{i}-objects.npy,{arch}-clip{i}-scenes.npy")
        xs.append(x)
        tos.append(to.T)
        tss.append(ts.T)
    manifest = os.path.join(workdir, f"{arch}-manifest.csv")
    with open(manifest, "w") as f:
        f.write("\n".join(rows) + "\n")
    as_t = lambda arrays: torch.from_numpy(np.stack(arrays).astype(np.float64))  # noqa: E731
    return manifest, as_t(xs)[:, None], as_t(tos), as_t(tss)


# A ReLU input or max-pool gap below KINK_TAU times the layer's RMS is an ambiguous kink: the
# float32 forward pass (relative error ~1e-6) cannot tell its side.
KINK_TAU = 2e-5


def bn_fed_bias(name):
    """A convolution bias followed by batch norm: its exact gradient is 0 and it does not change
    the network's output, so Adam moves it only by rounding noise."""
    block = name.split(".")[0]
    return name.endswith(".bias") and block.startswith("conv") and not block.endswith(("_objects", "_scenes"))


def torch_reference(arch, w0, x, t_obj, t_scn, lr, betas, dtype):
    """Gradients, the loss, per-layer output gradients, and the state after 1 and 3 Adam steps."""
    net = ref.SoundNet(arch)
    net.load_numpy(w0)
    net = net.to(dtype)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=betas, eps=1e-8)
    result = {}
    for step in range(3):
        taps = net(x.to(dtype))
        for name, t in taps.items():
            if name.endswith("_linear"):
                t.retain_grad()
        loss = ref.kl_loss(taps, net.head_name, t_obj.to(dtype), t_scn.to(dtype))
        opt.zero_grad()
        loss.backward()
        if step == 0:
            result["loss"] = loss.item()
            result["grads"] = {k: p.grad.detach().double().numpy().copy() for k, p in net.named_parameters()}
            result["terms"] = {k: t.grad.abs().sum(dim=(0, 2)).double().numpy() for k, t in taps.items()
                               if k.endswith("_linear")}
        if step == 0:
            # The same gradient with every ambiguous kink routed the other way (float32 budget).
            flip_net = ref.SoundNet(arch)
            flip_net.load_numpy(w0)
            flip_net = flip_net.to(dtype)
            flip_net.train()
            flips = ref.kink_flips(taps, flip_net.spec, KINK_TAU)
            ftaps = flip_net(x.to(dtype), flips)
            ref.kl_loss(ftaps, flip_net.head_name, t_obj.to(dtype), t_scn.to(dtype)).backward()
            result["flipped"] = {k: p.grad.detach().double().numpy().copy() for k, p in flip_net.named_parameters()}
            result["kinks"] = int(sum(int(m.sum()) for m in flips.values()))
        opt.step()
        if step == 0:
            result["after1"] = {k: v.astype(np.float64) for k, v in net.state_numpy().items()}
    result["after3"] = {k: v.astype(np.float64) for k, v in net.state_numpy().items()}
    return result


def check_train(args):
    """float64: the library's arithmetic, held to the acceptance bounds. float32: the same bounds
    where they are meaningful; a max-pool window whose two largest inputs are within float32
    rounding of each other routes the gradient differently in float32 and float64 (the
    derivative is discontinuous at ties), so float32 gradients are also compared with PyTorch's
    own float32 gradients on the same data."""
    lr, beta1, beta2 = 1e-3, 0.9, 0.999
    for arch, samples in (("soundnet8", 441000), ("soundnet5", 300000)):
        batch = 2
        g = torch.Generator().manual_seed(7)
        init = ref.SoundNet(arch)
        init.paper_init(g)
        w0 = {k: v.astype(np.float32) for k, v in init.state_numpy().items()}
        w0path = os.path.join(args.workdir, f"{arch}-w0.safetensors")
        ref.write_safetensors(w0path, w0, {"architecture": arch})
        manifest, x, t_obj, t_scn = make_batch(args.workdir, arch, batch, samples, 3)
        r64 = torch_reference(arch, w0, x, t_obj, t_scn, lr, (beta1, beta2), torch.float64)
        r32 = torch_reference(arch, w0, x, t_obj, t_scn, lr, (beta1, beta2), torch.float32)
        w0d = {k: v.astype(np.float64) for k, v in w0.items()}

        for precision in ("float64", "float32"):
            tag = f"train {arch} {precision}"
            gpath, w1path, w3path = (os.path.join(args.workdir, f"{arch}-{precision}-{n}.safetensors")
                                     for n in ("g", "w1", "w3"))
            common = [args.driver, "train", "--arch", arch, "--init", w0path, "--manifest", manifest, "--batch-size",
                      str(batch), "--lr", str(lr), "--beta1", str(beta1), "--beta2", str(beta2),
                      "--precision", precision]
            out1 = run(common + ["--steps", "1", "--dump-gradients", gpath, "--save", w1path])
            run(common + ["--steps", "3", "--save", w3path])
            our_loss = float(out1.split("loss")[1].split()[0])
            grads, _ = ref.read_safetensors(gpath)
            w1, _ = ref.read_safetensors(w1path)
            w3, _ = ref.read_safetensors(w3path)
            loss = r64["loss"]
            check(f"{tag} loss", abs(our_loss - loss) <= 1e-5 * abs(loss), f"ours {our_loss:.8f}, reference {loss:.8f}")

            # float64 is held to 1e-3. float32 may differ at ambiguous kinks, so its budget is
            # 1e-3 plus twice the change the reference itself shows when they all flip.
            worst, worst_name, bias_ratio, kink_notes = 0.0, "", 0.0, []
            for name, gref in r64["grads"].items():
                if bn_fed_bias(name):  # compare |ours| with the size of the terms it sums
                    scale = r64["terms"][name.split(".")[0] + "_linear"]
                    bias_ratio = max(bias_ratio, float(np.max(np.abs(grads[name]) / scale)))
                    continue
                err = rel_l2(grads[name], gref)
                kink = rel_l2(r64["flipped"][name], gref)
                budget = 1e-3 + (2 * kink if precision == "float32" else 0.0)
                if err > worst:
                    worst, worst_name = err, name
                if err > 1e-3 and err <= budget:
                    kink_notes.append(f"{name} {err:.2g} (kinks move it by {kink:.2g})")
                if not err <= budget:
                    check(f"{tag} gradient {name}", False, f"relative L2 error {err:.3g} > {budget:.3g}"
                          f" (1e-3{' + 2 x kink sensitivity' if precision == 'float32' else ''})")
            note = (f"; {r64['kinks']} ambiguous kinks in the reference, within their budget: " + ", ".join(kink_notes)
                    if kink_notes else "")
            check(f"{tag} first-step gradients", not any(
                rel_l2(grads[k], g) > 1e-3 + (2 * rel_l2(r64["flipped"][k], g) if precision == "float32" else 0)
                for k, g in r64["grads"].items() if not bn_fed_bias(k)),
                f"worst relative L2 error {worst:.3g} ({worst_name}){note}")
            check(f"{tag} conv biases before batch norm", bias_ratio <= 1e-4,
                  f"largest |gradient| / sum |terms| = {bias_ratio:.3g} (exact value 0)")

            after1 = r64["after1"]
            err = max(rel_l2(w1[k], after1[k]) for k in after1 if "running" in k)
            check(f"{tag} BN running statistics after one step", err <= 1e-4, f"worst relative L2 error {err:.3g}")
            checked = mismatched = 0
            stable = {}  # elements whose gradient no ambiguous kink moves by more than 1e-3
            for name, gref in r64["grads"].items():
                stable[name] = (np.abs(r64["flipped"][name] - gref) <= 1e-3 * np.abs(gref)) | (precision == "float64")
                signal = (np.abs(gref) > max(1e-2 * float(np.sqrt(np.mean(gref ** 2))), 1e-7)) & stable[name]
                bad = np.abs((w1[name] - w0d[name]) - (after1[name] - w0d[name])) > 1e-3 * lr
                checked += int(signal.sum())
                mismatched += int((bad & signal).sum())
            total = sum(g.size for g in r64["grads"].values())
            check(f"{tag} Adam first update", mismatched == 0 and checked > 0.5 * total,
                  f"{mismatched} of {checked} elements with a non-noise{' kink-stable' if precision == 'float32' else ''}"
                  f" gradient differ by more than 1e-3 lr ({checked / total:.1%} of all elements checked)")

            # After 3 steps float64 is held to 5e-2. In float32, Adam's first +-lr steps (10% of
            # the N(0, 0.01) weights) make steps 2 and 3 depend on which side of each ambiguous
            # kink the rounding fell, and PyTorch's own float32 run differs from float64 by up to
            # ~0.1 here; the float32 figures are printed beside PyTorch's, not asserted.
            worst, worst_name, worst_peer, failures = 0.0, "", 0.0, []
            for name in r64["grads"]:
                if bn_fed_bias(name):
                    continue
                err = rel_l2(w3[name] - w0d[name], r64["after3"][name] - w0d[name])
                peer = rel_l2(r32["after3"][name] - w0d[name], r64["after3"][name] - w0d[name])
                if err > worst:
                    worst, worst_name, worst_peer = err, name, peer
                if not err <= 5e-2:
                    failures.append(f"{name} {err:.3g} (PyTorch float32 {peer:.3g})")
            detail = (f"worst relative L2 error {worst:.3g} ({worst_name}); conv biases before batch norm excluded"
                      + ("; over 5e-2: " + ", ".join(failures) if failures else ""))
            if precision == "float64":
                check(f"{tag} weight change after 3 Adam steps", not failures, detail)
            else:
                print(f"INFO  {tag} weight change after 3 Adam steps (not asserted; PyTorch float32's worst here "
                      f"{max(rel_l2(r32['after3'][k] - w0d[k], r64['after3'][k] - w0d[k]) for k in r64['grads'] if not bn_fed_bias(k)):.3g}): "
                      + detail, flush=True)


def check_length(args):
    for arch, expected in (("soundnet8", None), ("soundnet5", None)):
        net = ref.SoundNet(arch)
        net.eval()
        lo, hi = 1, 1 << 20  # smallest input with one output step, by PyTorch's shape rules
        while lo < hi:
            mid = (lo + hi) // 2
            try:
                with torch.no_grad():
                    ok = net(torch.zeros(1, 1, mid))[f"{net.head_name}_objects"].shape[2] >= 1
            except RuntimeError:
                ok = False
            lo, hi = (lo, mid) if ok else (mid + 1, hi)
        wpath = os.path.join(args.workdir, f"{arch}-len.safetensors")
        ref.write_safetensors(wpath, {k: v.astype(np.float32) for k, v in net.state_numpy().items()},
                              {"architecture": arch})
        results = []
        for samples in (lo, lo - 1):
            xpath = os.path.join(args.workdir, f"len{samples}.npy")
            np.save(xpath, waveform(samples, 1))
            p = subprocess.run([args.driver, "extract", "--arch", arch, "--weights", wpath, "--input-npy", xpath, "--layer",
                                f"{net.head_name}_objects", "--out", os.path.join(args.workdir, "len.npy")],
                               capture_output=True, text=True)
            results.append((p.returncode, p.stderr.strip()))
        ok = results[0][0] == 0 and results[1][0] != 0 and f"at least {lo} samples" in results[1][1]
        check(f"length {arch} minimum input", ok,
              f"PyTorch's minimum is {lo} samples; ours accepts it: {results[0][0] == 0}; "
              f"{lo - 1} samples: {results[1][1] or 'accepted'}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--driver", required=True, help="soundnet-reference")
    p.add_argument("--workdir", required=True)
    p.add_argument("--only", choices=["eval", "train", "length"])
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    torch.set_num_threads(2)
    for name, fn in (("eval", check_eval), ("train", check_train), ("length", check_length)):
        if args.only in (None, name):
            fn(args)
    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    return 0 if passed == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
