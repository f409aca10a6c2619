"""The DINOv2 ViT forward pass in NumPy.

    pixels (B, 3, H, W) -> patch embedding (B, N, D) + interpolated position embeddings
    -> [CLS, registers..., patches] (B, T, D), T = 1 + R + N
    -> depth x pre-norm block: x += LS1 * attn(LN1(x)); x += LS2 * mlp(LN2(x))
    -> final layer norm -> last hidden state (B, T, D)

Work is split over `threads` Python threads (NumPy and BLAS release the GIL), each calling a
single-threaded BLAS, so the elementwise passes, which NumPy runs on one core, are parallel
as well as the products. A batch that is a multiple of `threads` goes whole images per
thread; otherwise (batch 1) the threads split each block's weights, heads for attention and
hidden units for the MLP. See docs/embedding-engine.md for measurements.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.embedding.engine.blas import blas_threads
from services.embedding.engine.config import ARCHITECTURES, Dinov2Config
from services.embedding.engine.errors import WeightsError
from services.embedding.engine.interpolate import resize_grid
from services.embedding.engine.keymap import iter_canonical, to_canonical, to_hf
from services.embedding.engine.layers import (
    GELU_BLOCK,
    attend_heads,
    gelu_scaled,
    normalize_rows,
    swiglu,
)
from services.embedding.engine.readers import read_state_dict
from services.embedding.engine.weights import (
    BlockWeights,
    fold_block,
    hash_update,
    random_canonical,
    release_mappings,
)

logger = logging.getLogger(__name__)

F32 = NDArray[np.float32]


@dataclass
class EmbedResult:
    """Features of a batch, float32, each vector L2-normalised.

    cls: (B, D) class token; mean_pooled: (B, D) mean of the patch tokens (normalised after
    pooling); patch: (B, gh, gw, D) patch tokens, or None unless asked for.
    """

    cls: F32
    mean_pooled: F32
    patch: F32 | None


def _l2(x: F32) -> F32:
    norms = np.sqrt(np.einsum("...d,...d->...", x, x))[..., None]
    np.maximum(norms, np.float32(1e-12), out=norms)
    out: F32 = (x / norms).astype(np.float32, copy=False)
    return out


# Every activation buffer starts on a 64-byte boundary (and, all widths being multiples of 16
# floats, so does every row). Some OpenBLAS kernels (the Zen/Haswell ones) round differently
# with the alignment of their operands: with buffers wherever malloc puts them, the same image
# twice in one batch, one per thread, came out different in the last bit.
_ALIGN = 64


def _aligned_empty(*shape: int) -> F32:
    """An uninitialised float32 array of `shape` whose data starts on a 64-byte boundary."""
    count = int(np.prod(shape))
    raw = np.empty(count + _ALIGN // 4, dtype=np.float32)
    skip = (-raw.ctypes.data % _ALIGN) // 4
    out: F32 = raw[skip:skip + count].reshape(shape)
    return out


def _chunks(n: int, parts: int) -> list[tuple[int, int]]:
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


class _Scratch:
    """Per-thread buffers, grown on demand and reused across calls."""

    def __init__(self) -> None:
        self._bufs: dict[str, F32] = {}

    def get(self, name: str, rows: int, cols: int) -> F32:
        buf = self._bufs.get(name)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != cols:
            buf = _aligned_empty(rows, cols)
            self._bufs[name] = buf
        return buf[:rows]

    def ones(self, rows: int) -> F32:
        """(rows, 1) of ones, filled once per size."""
        buf = self._bufs.get("ones")
        if buf is None or buf.shape[0] != rows:
            buf = _aligned_empty(rows, 1)
            buf.fill(1.0)
            self._bufs["ones"] = buf
        return buf


class Dinov2Model:
    """A DINOv2 ViT/14 with folded float32 weights. Build it with `from_file` or `random`."""

    def __init__(
        self,
        config: Dinov2Config,
        embed: dict[str, F32],
        blocks: list[BlockWeights],
        weights_sha256: str,
        *,
        source: Callable[[], dict[str, F32]],
        threads: int = 0,
        mlp_rows: int = 2048,
        attention_bytes: int = 1 << 20,
    ) -> None:
        self.config = config
        self.weights_sha256 = weights_sha256
        self.model_id = f"{config.name}:{weights_sha256[:12]}"
        self.threads = threads if threads > 0 else (os.cpu_count() or 1)
        self.mlp_rows = mlp_rows
        # scores of at most this many bytes per group of heads: 4 heads at 224x224, one at
        # 518x518 (a 4 MB budget ran no faster and cost 5 MB of peak memory at batch 8)
        self.attention_bytes = attention_bytes
        self._embed = embed
        self._blocks = blocks
        self._source = source
        self._pos_cache: dict[tuple[int, int], tuple[F32, F32]] = {}
        self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="dinov2") if (
            self.threads > 1) else None
        self._scratch = [_Scratch() for _ in range(self.threads)]
        # One forward at a time: the pool and the scratch buffers are shared.
        self._lock = threading.Lock()

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_canonical(cls, config: Dinov2Config,
                       canonical: Iterable[tuple[str, F32]] | dict[str, F32], *,
                       source: Callable[[], dict[str, F32]], threads: int = 0,
                       release: bool = False) -> Dinov2Model:
        """Fold canonical tensors (in canonical order) into a model, one block at a time; with
        `release`, the mapped file pages are dropped after each block so the file and the
        model are never resident together."""
        items = canonical.items() if isinstance(canonical, dict) else canonical
        digest = hashlib.sha256()
        embed: dict[str, F32] = {}
        blocks: list[BlockWeights] = []
        pending: dict[str, F32] = {}
        current = -1

        def flush() -> None:
            blocks.append(fold_block(pending, current, config))
            if release:
                release_mappings(pending.values())
            pending.clear()

        for name, array in items:
            hash_update(digest, name, array)
            if name.startswith("blocks."):
                index = int(name.split(".", 2)[1])
                if index != current and pending:
                    flush()
                current = index
                pending[name] = array
            else:
                embed[name] = np.array(array, dtype=np.float32)
                if release:
                    release_mappings([array])
        if pending:
            flush()
        p, d = config.patch_size, config.dim
        # (D, 3, p, p) conv kernel -> (3*p*p, D) matrix over (channel, row, col) patches
        embed["patch_matrix"] = np.ascontiguousarray(
            embed.pop("patch_embed.proj.weight").reshape(d, 3 * p * p).T)
        return cls(config, embed, blocks, digest.hexdigest(), source=source, threads=threads)

    @classmethod
    def from_state_dict(cls, state: dict[str, NDArray[Any]], arch: str | None = None, *,
                        threads: int = 0) -> Dinov2Model:
        """A model from any-scheme tensors (architecture inferred unless `arch` is given)."""
        config = _arch(arch) if arch else None
        config, canonical = to_canonical(state, config)
        snapshot = {k: np.array(v) for k, v in canonical.items()}
        return cls.from_canonical(config, canonical, source=lambda: snapshot, threads=threads)

    @classmethod
    def from_file(cls, path: str | Path, arch: str | None = None, *,
                  threads: int = 0) -> Dinov2Model:
        """Load weights from .safetensors, .pth/.pt or .npz; the architecture is inferred from
        the weights when `arch` is None, else they must match it."""
        path = Path(path)
        expected = _arch(arch) if arch else None
        config, canonical = iter_canonical(read_state_dict(path), expected)

        def source() -> dict[str, F32]:
            return to_canonical(read_state_dict(path), config)[1]

        model = cls.from_canonical(config, canonical, source=source, threads=threads,
                                   release=True)
        logger.info("loaded %s from %s (%d parameters)", model.model_id, path.name,
                    config.weight_count())
        return model

    @classmethod
    def random(cls, arch: str | Dinov2Config, seed: int = 0, *, threads: int = 0) -> Dinov2Model:
        """Deterministic random weights (tests, demos with IMGSEARCH_RANDOM_WEIGHTS=1)."""
        config = arch if isinstance(arch, Dinov2Config) else _arch(arch)
        canonical = random_canonical(config, seed)
        return cls.from_canonical(config, canonical,
                                  source=lambda: random_canonical(config, seed), threads=threads)

    # -- weights out ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, F32]:
        """Canonical tensors (official dinov2 names), re-read from the source."""
        return self._source()

    def state_dict_hf(self, naming: str = "disk") -> dict[str, F32]:
        """Tensors under Hugging Face names (`disk`: as published; `modules`: q_proj...),
        including the (unused, zero) mask token that HF checkpoints carry."""
        out = to_hf(self._source(), self.config, naming=naming)
        out["embeddings.mask_token"] = np.zeros((1, self.config.dim), dtype=np.float32)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- forward --------------------------------------------------------------------------

    def _positions(self, gh: int, gw: int) -> tuple[F32, F32]:
        """(D,) CLS position and (gh*gw, D) patch positions (+ patch bias), cached per grid."""
        cached = self._pos_cache.get((gh, gw))
        if cached is not None:
            return cached
        cfg = self.config
        pos = self._embed["pos_embed"][0]
        grid = pos[1:].reshape(cfg.pos_grid, cfg.pos_grid, cfg.dim)
        if (gh, gw) != (cfg.pos_grid, cfg.pos_grid):
            # The registers model resamples with antialiasing; the plain one without.
            grid = resize_grid(grid, gh, gw, antialias=cfg.num_registers > 0)
        patch = grid.reshape(gh * gw, cfg.dim) + self._embed["patch_embed.proj.bias"]
        cached = (pos[0].copy(), np.ascontiguousarray(patch, dtype=np.float32))
        self._pos_cache[(gh, gw)] = cached
        return cached

    def _parallel(self, fn: Callable[[int, int, int], None], n: int) -> None:
        """Run fn(worker, lo, hi) over `threads` contiguous ranges of range(n)."""
        ranges = _chunks(n, self.threads)
        if self._pool is None or len(ranges) == 1:
            for w, (lo, hi) in enumerate(ranges):
                fn(w, lo, hi)
            return
        futures = [self._pool.submit(fn, w, lo, hi) for w, (lo, hi) in enumerate(ranges)
                   if w > 0]
        fn(0, *ranges[0])
        for future in futures:
            future.result()

    def forward(self, pixels: NDArray[np.floating[Any]]) -> F32:
        """(B, 3, H, W) normalised pixels, H and W multiples of 14 -> (B, 1+R+N, D) last
        hidden state after the final layer norm (N = H/14 * W/14 patch tokens)."""
        cfg = self.config
        p, d = cfg.patch_size, cfg.dim
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected pixels of shape (B, 3, H, W), got {pixels.shape}")
        b, _, h, w = pixels.shape
        if h % p or w % p or h == 0 or w == 0 or b == 0:
            raise ValueError(f"height and width must be positive multiples of {p}, got {h}x{w}")
        gh, gw = h // p, w // p
        n, r = gh * gw, cfg.num_registers
        t = 1 + r + n
        cls_pos, patch_pos = self._positions(gh, gw)
        # (B,3,gh,p,gw,p) -> (B,gh,gw,3,p,p): one row of 3*p*p values per patch
        patches = np.ascontiguousarray(
            np.asarray(pixels, dtype=np.float32).reshape(b, 3, gh, p, gw, p)
            .transpose(0, 2, 4, 1, 3, 5)).reshape(b * n, 3 * p * p)
        x = _aligned_empty(b, t, d)
        with self._lock, blas_threads(1):
            emb = x[:, 1 + r:]
            np.matmul(patches.reshape(b, n, 3 * p * p), self._embed["patch_matrix"], out=emb)
            del patches  # 4.8 MB at batch 8, not needed past the patch embedding
            emb += patch_pos
            x[:, 0] = self._embed["cls_token"][0, 0] + cls_pos
            if r:
                x[:, 1:1 + r] = self._embed["register_tokens"][0]
            if self._pool is None or b % self.threads == 0:
                # Whole images per thread: no synchronisation at all until the end.
                self._parallel(partial(self._images, x=x), b)
            else:
                self._sharded(x.reshape(b * t, d), b, t)
        return x

    # -- whole images on one thread -------------------------------------------------------

    def _images(self, worker: int, lo: int, hi: int, x: F32) -> None:
        """The full forward of images [lo, hi) of x (B, T, D), in place, on this thread."""
        s = self._scratch[worker]
        cfg = self.config
        d, t = cfg.dim, x.shape[1]
        rows = (hi - lo) * t
        xs = x[lo:hi].reshape(rows, d)
        ln, stat = s.get("ln", rows, d), s.get("stat", rows, 1)
        qkv, attn = s.get("qkv", rows, 3 * d), s.get("attn", rows, d)
        for blk in self._blocks:
            normalize_rows(xs, ln, cfg.layer_norm_eps, stat)
            np.matmul(ln, blk.w_qkv.T, out=qkv)
            self._attention(s, qkv, blk.b_qkv, attn, hi - lo, t, 0, cfg.heads)
            # ln is free once QKV is computed, attn once the projection is: no third buffer
            np.matmul(attn, blk.w_proj.T, out=ln)
            ln += blk.b_proj
            xs += ln
            normalize_rows(xs, ln, cfg.layer_norm_eps, stat)
            self._mlp(s, ln, attn, blk, 0, cfg.mlp_hidden)
            attn += blk.b_out
            xs += attn
        self._final_norm(s, xs)

    # -- one image (or an odd batch) split over the threads -----------------------------

    def _sharded(self, x: F32, b: int, t: int) -> None:
        """Forward of x (B*T, D) in place with the threads splitting each block's weights:
        heads for QKV + attention + projection, hidden units for the MLP, every product over
        all B*T rows (measured: halving N or K of a 257-row product keeps its speed, halving
        M to 128 rows costs 10-15%).

        Two phases per block, each ending when every thread is done: (A) attention of the
        thread's heads, (B) the MLP of its hidden units; each leaves per-thread partial sums
        of its output. Every thread keeps its own copy of the residual stream and adds all
        partial sums to it at the start of the next phase (the same additions in the same
        order, so the copies stay identical), then its own layer norm: no phase of its own
        for the reduction, and two waits per block instead of four. Partial sums of A and B
        go to separate buffers, so a phase never writes what the other threads still read.
        """
        cfg = self.config
        m, d = x.shape
        n = self.threads
        heads = _chunks(cfg.heads, n)
        hidden = _chunks(cfg.mlp_hidden, n)
        eps = cfg.layer_norm_eps
        qkv = _aligned_empty(m, 3 * d)
        attn = _aligned_empty(m, d)
        parts_a = _aligned_empty(len(heads), m, d)
        parts_b = _aligned_empty(len(hidden), m, d)
        copies = [x] + [_aligned_empty(m, d) for _ in range(1, n)]
        for copy in copies[1:]:
            copy[:] = x
        lns = [_aligned_empty(m, d) for _ in range(n)]
        blocks = self._blocks

        def gather(xw: F32, parts: F32, bias: F32) -> None:
            for part in parts:
                xw += part
            xw += bias

        def phase_a(i: int, w: int) -> None:
            s, xw, ln = self._scratch[w], copies[w], lns[w]
            if i > 0:
                gather(xw, parts_b, blocks[i - 1].b_out)
            normalize_rows(xw, ln, eps, s.get("stat", m, 1))
            if w >= len(heads):
                return
            blk = blocks[i]
            h0, h1 = heads[w]
            cols = slice(3 * h0 * cfg.head_dim, 3 * h1 * cfg.head_dim)
            np.matmul(ln, blk.w_qkv[cols].T, out=qkv[:, cols])
            self._attention(s, qkv, blk.b_qkv, attn, b, t, h0, h1)
            own = slice(h0 * cfg.head_dim, h1 * cfg.head_dim)
            np.matmul(attn[:, own], blk.w_proj[:, own].T, out=parts_a[w])

        def phase_b(i: int, w: int) -> None:
            s, xw, ln = self._scratch[w], copies[w], lns[w]
            blk = blocks[i]
            gather(xw, parts_a, blk.b_proj)
            normalize_rows(xw, ln, eps, s.get("stat", m, 1))
            if w < len(hidden):
                self._mlp(s, ln, parts_b[w], blk, *hidden[w])

        def finish(w: int, lo: int, hi: int) -> None:
            # the last block's MLP sums on thread 0's copy (which is x), by rows
            gather(x[lo:hi], parts_b[:, lo:hi], blocks[-1].b_out)
            self._final_norm(self._scratch[w], x[lo:hi])

        for i in range(len(blocks)):
            self._each(partial(phase_a, i))
            self._each(partial(phase_b, i))
        self._parallel(finish, m)

    def _each(self, fn: Callable[[int], None]) -> None:
        """fn(worker) on every thread (worker 0 on this one), returning when all are done."""
        self._parallel(lambda w, _lo, _hi: fn(w), self.threads)

    # -- kernels shared by both ways ------------------------------------------------------

    def _attention(self, s: _Scratch, qkv: F32, bias: F32, attn: F32, images: int, t: int,
                   h0: int, h1: int) -> None:
        """Heads [h0, h1) of `images` images: qkv (images*T, 3D) head-major, C-contiguous,
        without its bias (3D,) -> attn columns of those heads, (images*T, D). The heads of an
        image go through `attend_heads` together, in groups whose (n, T, T) scores stay within
        `attention_bytes`."""
        hd, heads = self.config.head_dim, self.config.heads
        c0, c1 = 3 * h0 * hd, 3 * h1 * hd
        qkv[:images * t, c0:c1] += bias[c0:c1]
        group = max(1, min(h1 - h0, self.attention_bytes // (4 * t * t)))
        scores = s.get("scores", group * t, t).reshape(group, t, t)
        ones = s.ones(t)
        for img in range(images):
            rows = slice(img * t, (img + 1) * t)
            # views of the contiguous row blocks: (T, heads, [q|k|v], hd) and (T, heads, hd)
            grouped = qkv[rows].reshape(t, heads, 3, hd)
            out = attn[rows].reshape(t, heads, hd)
            for a in range(h0, h1, group):
                e = min(h1, a + group)
                g = grouped[:, a:e].transpose(1, 2, 0, 3)  # (n, 3, T, hd)
                attend_heads(g[:, 0], g[:, 1], g[:, 2], out[:, a:e].transpose(1, 0, 2),
                             scores[:e - a], ones)

    def _mlp(self, s: _Scratch, ln: F32, out: F32, blk: BlockWeights, k0: int, k1: int) -> None:
        """out = act(ln W_in[k0:k1]^T + b_in) W_out[:, k0:k1]^T for hidden units [k0, k1),
        without the output bias; rows in equal chunks of at most mlp_rows (a memory bound for
        large batches; measured: larger chunks run the products faster, e.g. one thread's
        4 images as one 1028-row chunk rather than two of 514: 15% less time per image)."""
        cfg = self.config
        m, width = ln.shape[0], k1 - k0
        swiglu_mlp = cfg.mlp == "swiglu"
        w_out = blk.w_out[:, k0:k1].T
        for a, e in _chunks(m, -(-m // self.mlp_rows)):
            rows = e - a
            if swiglu_mlp:
                u = s.get("u", rows, 2 * width)
                np.matmul(ln[a:e], blk.w_in[k0:k1].T, out=u[:, :width])
                np.matmul(ln[a:e], blk.w_in[cfg.mlp_hidden + k0:cfg.mlp_hidden + k1].T,
                          out=u[:, width:])
                u[:, :width] += blk.b_in[k0:k1]
                u[:, width:] += blk.b_in[cfg.mlp_hidden + k0:cfg.mlp_hidden + k1]
                act = swiglu(u, width, s.get("act", rows, width))
            else:
                u = s.get("u", rows, width)
                np.matmul(ln[a:e], blk.w_in[k0:k1].T, out=u)
                act = gelu_scaled(u, blk.b_in[k0:k1], s.get("gelu", 3, GELU_BLOCK))
            np.matmul(act, w_out, out=out[a:e])

    def _final_norm(self, s: _Scratch, x: F32) -> None:
        rows = x.shape[0]
        out = normalize_rows(x, s.get("ln", rows, x.shape[1]), self.config.layer_norm_eps,
                             s.get("stat", rows, 1))
        out *= self._embed["norm.weight"]
        out += self._embed["norm.bias"]
        x[:] = out

    # -- features -------------------------------------------------------------------------

    def embed(self, pixels: NDArray[np.floating[Any]], patch_tokens: bool = False) -> EmbedResult:
        """(B, 3, H, W) -> CLS, mean-pooled patches and (optionally) patch tokens, each
        L2-normalised float32."""
        hidden = self.forward(pixels)
        b, _, h, w = pixels.shape
        p, r = self.config.patch_size, self.config.num_registers
        patches = hidden[:, 1 + r:]
        cls = _l2(hidden[:, 0])
        mean = _l2(patches.mean(axis=1, dtype=np.float32))
        patch = _l2(patches).reshape(b, h // p, w // p, -1) if patch_tokens else None
        return EmbedResult(cls=cls, mean_pooled=mean, patch=patch)


def _arch(name: str) -> Dinov2Config:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise WeightsError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}",
                           code="unknown_architecture") from None
