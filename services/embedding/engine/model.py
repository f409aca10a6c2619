"""The DINOv2 ViT forward pass in NumPy, fast: the same function as reference.py (read that one
first), with folded weights, scratch buffers and threads.

    pixels (B, 3, H, W) -> patch embedding (B, N, D) + interpolated position embeddings
    -> [CLS, registers..., patches] (B, T, D), T = 1 + R + N
    -> depth x pre-norm block: x += LS1 * attn(LN1(x)); x += LS2 * mlp(LN2(x))
    -> final layer norm -> last hidden state (B, T, D)

Work is split over `threads` Python threads (NumPy and BLAS release the GIL), each calling a
single-threaded BLAS, so the elementwise passes, which NumPy runs on one core, are parallel
as well as the products. A batch that is a multiple of `threads` goes whole images per
thread; otherwise (batch 1) the threads split the rows (tokens), each attending to the keys
and values of all. Both run the one block step, `Dinov2Model.block_step`. See
docs/embedding-engine.md for measurements.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.common.cpu import available_cpus
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
    pooling); patch: (B, gh, gw, D) patch tokens; both None unless asked for.
    """

    cls: F32
    mean_pooled: F32 | None
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


def _no_wait() -> None:
    return None


def _no_tick(_step: str) -> None:
    return None


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
        self.threads = threads if threads > 0 else available_cpus()
        self.mlp_rows = mlp_rows
        # scores of at most this many bytes per group of heads: 4 heads at 224x224, one at
        # 518x518 (a 4 MB budget ran no faster and cost 5 MB of peak memory at batch 8)
        self.attention_bytes = attention_bytes
        self._embed = embed
        self._blocks = blocks
        self._source = source
        self._pos_cache: dict[tuple[int, int], tuple[F32, F32]] = {}
        # (D, 1) of 1/D: layer-norm means as products (`normalize_rows`); read-only, shared
        self._mean_col = np.full((config.dim, 1), 1.0 / config.dim, dtype=np.float32)
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
        with self._lock, blas_threads(1):
            x = self._tokens(pixels)
            self._blocks_on(x, len(self._blocks))
        return x

    def forward_cls(self, pixels: NDArray[np.floating[Any]]) -> F32:
        """(B, 3, H, W) -> (B, D): the CLS row of `forward`'s last hidden state, with the last
        block computed for the CLS token alone (`_cls_block`): one block fewer of work, for
        callers that want the CLS features and nothing else."""
        with self._lock, blas_threads(1):
            x = self._tokens(pixels)
            self._blocks_on(x, len(self._blocks) - 1)
            return self._cls_block(x)

    def _tokens(self, pixels: NDArray[np.floating[Any]]) -> F32:
        """(B, 3, H, W) -> (B, T, D) input of the first block: patch embedding plus positions,
        after the CLS token and the registers."""
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
            .transpose(0, 2, 4, 1, 3, 5)).reshape(b, n, 3 * p * p)
        x = _aligned_empty(b, t, d)
        emb = x[:, 1 + r:]
        self._embed_patches(patches, emb)
        del patches  # 4.8 MB at batch 8, not needed past the patch embedding
        emb += patch_pos
        x[:, 0] = self._embed["cls_token"][0, 0] + cls_pos
        if r:
            x[:, 1:1 + r] = self._embed["register_tokens"][0]
        return x

    def _embed_patches(self, patches: F32, emb: F32) -> None:
        """emb (B, N, D) = patches (B, N, 3*p*p) @ the patch matrix, on every thread: images
        over the threads, or the patches of one image."""
        matrix = self._embed["patch_matrix"]
        b, n = patches.shape[:2]
        by_image = b >= self.threads

        def part(_w: int, lo: int, hi: int) -> None:
            if by_image:
                np.matmul(patches[lo:hi], matrix, out=emb[lo:hi])
            else:
                np.matmul(patches[:, lo:hi], matrix, out=emb[:, lo:hi])

        self._parallel(part, b if by_image else n)

    def _blocks_on(self, x: F32, depth: int) -> None:
        """The first `depth` blocks on x (B, T, D) in place, followed by the final layer norm
        when `depth` is all of them."""
        b, t, d = x.shape
        if depth == 0:
            return
        if self._pool is None or b % self.threads == 0:
            # Whole images per thread: no synchronisation at all until the end.
            self._parallel(partial(self._images, x=x, depth=depth), b)
        else:
            self._rows(x.reshape(b * t, d), b, t, depth)

    # -- one block: the step both thread splits (and bench/engine_profile.py) run ----------

    def block_step(self, worker: int, blk: BlockWeights, xs: F32, qkv: F32, lo: int, hi: int,
                   t: int, wait: Callable[[], object] = _no_wait,
                   tick: Callable[[str], None] = _no_tick) -> None:
        """One pre-norm block, x += LS1 attn(LN1 x); x += LS2 mlp(LN2 x), on rows [lo, hi) of
        the (B*T, D) residual stream, in place, on this thread (`worker`'s scratch buffers).

        `xs` is those rows; `qkv` a (>= hi, 3D) buffer: this call writes rows [lo, hi), then,
        after `wait()`, its queries attend to the keys and values of every row of their images
        (written by the other threads when the rows are split; `wait` is their barrier).
        `tick(step)` follows each step (the profiler's clock). The layer-norm affine, the
        LayerScales and the attention and GELU scales are in the weights (`fold_block`);
        reference.py's `block` is the same function written plainly."""
        s = self._scratch[worker]
        rows, d = xs.shape
        eps = self.config.layer_norm_eps
        ln, stat, attn = s.get("ln", rows, d), s.get("stat", rows, 1), s.get("attn", rows, d)
        own = qkv[lo:hi]
        normalize_rows(xs, ln, eps, stat, self._mean_col)
        tick("layer norms")
        np.matmul(ln, blk.w_qkv.T, out=own)
        tick("QKV product")
        own += blk.b_qkv
        tick("bias and residual adds")
        wait()
        self._attend_rows(s, qkv, attn, lo, hi, t)
        tick("attention")
        # ln is free once QKV is computed, attn once the projection is: no third buffer
        np.matmul(attn, blk.w_proj.T, out=ln)
        tick("projection product")
        ln += blk.b_proj
        xs += ln
        tick("bias and residual adds")
        normalize_rows(xs, ln, eps, stat, self._mean_col)
        tick("layer norms")
        self._mlp(s, ln, attn, blk, tick)
        attn += blk.b_out
        xs += attn
        tick("bias and residual adds")

    # -- whole images on one thread -------------------------------------------------------

    def _images(self, worker: int, lo: int, hi: int, x: F32, depth: int) -> None:
        """The first `depth` blocks (and the final norm after the last) of images [lo, hi) of
        x (B, T, D), in place, on this thread."""
        d, t = self.config.dim, x.shape[1]
        rows = (hi - lo) * t
        xs = x[lo:hi].reshape(rows, d)
        qkv = self._scratch[worker].get("qkv", rows, 3 * d)
        for blk in self._blocks[:depth]:
            self.block_step(worker, blk, xs, qkv, 0, rows, t)
        if depth == len(self._blocks):
            self._final_norm(self._scratch[worker], xs)

    # -- one image (or an odd batch) split over the threads -----------------------------

    def _rows(self, x: F32, b: int, t: int, depth: int) -> None:
        """The first `depth` blocks (and the final norm after the last) on x (B*T, D) in
        place, with the threads splitting the rows (tokens): each thread owns a contiguous
        range of rows and runs every step of every block on them, except that its queries
        attend to the keys and values of all rows of their image.

        So there is one wait per block: after each thread has written its rows' QKV and
        before any reads the others'. The QKV of consecutive blocks alternate between two
        buffers, so a thread may write the next block's while another still reads this
        block's (it cannot get two blocks ahead: that needs the others at the next wait).
        Every product has the full weights and half the rows (measured on ViT-S/14 at batch
        1, 2 threads: 5% faster than splitting heads and hidden units, which waits twice per
        block and normalises every row on every thread; the same on ViT-B/14).
        """
        m, d = x.shape
        ranges = _chunks(m, self.threads)
        buffers = [_aligned_empty(m, 3 * d) for _ in range(2)]
        barrier = threading.Barrier(len(ranges))
        blocks = self._blocks[:depth]

        def steps(w: int) -> None:
            lo, hi = ranges[w]
            xs = x[lo:hi]
            for i, blk in enumerate(blocks):
                self.block_step(w, blk, xs, buffers[i % 2], lo, hi, t, barrier.wait)
            if depth == len(self._blocks):
                self._final_norm(self._scratch[w], xs)

        def run(w: int, _lo: int, _hi: int) -> None:
            # A thread that fails breaks the barrier, so the others stop instead of waiting
            # for it forever; its own exception is the one that reaches the caller.
            try:
                steps(w)
            except threading.BrokenBarrierError:
                return
            except BaseException:
                barrier.abort()
                raise

        self._parallel(run, len(ranges))

    def _attend_rows(self, s: _Scratch, qkv: F32, attn: F32, lo: int, hi: int, t: int) -> None:
        """All heads for the queries of rows [lo, hi) of qkv ((B*T, 3D) head-major, bias
        added), against the keys and values of their images -> attn (hi - lo, D). The heads
        go through `attend_heads` together, strided views of the QKV rows (no copies), in
        groups whose (n, rows, T) scores stay within `attention_bytes`."""
        hd, heads = self.config.head_dim, self.config.heads
        ones = s.ones(t)
        for img in range(lo // t, (hi - 1) // t + 1):
            q0, q1 = max(lo, img * t), min(hi, (img + 1) * t)
            rows = q1 - q0
            group = max(1, min(heads, self.attention_bytes // (4 * rows * t)))
            scores = s.get("scores", group * rows, t)[:group * rows].reshape(group, rows, t)
            keys = qkv[img * t:(img + 1) * t].reshape(t, heads, 3, hd)
            queries = qkv[q0:q1].reshape(rows, heads, 3, hd)
            out = attn[q0 - lo:q1 - lo].reshape(rows, heads, hd)
            for a in range(0, heads, group):
                e = min(heads, a + group)
                attend_heads(queries[:, a:e, 0].transpose(1, 0, 2),
                             keys[:, a:e, 1].transpose(1, 0, 2), keys[:, a:e, 2].transpose(1, 0, 2),
                             out[:, a:e].transpose(1, 0, 2), scores[:e - a], ones)

    def _mlp(self, s: _Scratch, ln: F32, out: F32, blk: BlockWeights,
             tick: Callable[[str], None] = _no_tick) -> None:
        """out = act(ln W_in^T + b_in) W_out^T, without the output bias; rows in equal chunks
        of at most mlp_rows (a memory bound for large batches; measured: larger chunks run the
        products faster, e.g. one thread's 4 images as one 1028-row chunk rather than two of
        514: 15% less time per image)."""
        hidden = self.config.mlp_hidden
        swiglu_mlp = self.config.mlp == "swiglu"
        m = ln.shape[0]
        for a, e in _chunks(m, -(-m // self.mlp_rows)):
            rows = e - a
            # SwiGLU's W_in holds the gate rows, then the up rows: u is [gate | up]
            u = s.get("u", rows, 2 * hidden if swiglu_mlp else hidden)
            np.matmul(ln[a:e], blk.w_in.T, out=u)
            tick("fc1 product")
            if swiglu_mlp:
                u += blk.b_in
                act = swiglu(u, hidden, s.get("act", rows, hidden))
            else:
                act = gelu_scaled(u, blk.b_in, s.get("gelu", 2, GELU_BLOCK))
            tick("GELU" if not swiglu_mlp else "SwiGLU")
            np.matmul(act, blk.w_out.T, out=out[a:e])
            tick("fc2 product")

    def _final_norm(self, s: _Scratch, x: F32) -> None:
        rows = x.shape[0]
        out = normalize_rows(x, s.get("ln", rows, x.shape[1]), self.config.layer_norm_eps,
                             s.get("stat", rows, 1), self._mean_col)
        out *= self._embed["norm.weight"]
        out += self._embed["norm.bias"]
        x[:] = out

    def _cls_block(self, x: F32) -> F32:
        """The last block and the final norm for the CLS token alone: x (B, T, D), the input
        of the last block -> (B, D), the CLS row of the last hidden state.

        Only the CLS row of the output is wanted, so no other token's query, key, value,
        projection or MLP is formed. With l_j the normalised rows, q a head's CLS query and
        Wk, bk, Wv, bv its key and value weights: q.k_j = (Wk^T q).l_j + q.bk, where q.bk is
        the same for every j and drops out of the softmax, and sum_j p_j v_j =
        Wv (sum_j p_j l_j) + bv since the p_j sum to 1. So each head costs two products of
        the (T, D) normalised rows with a vector, and the block 2 T D heads + 12 D^2
        multiply-adds per image instead of 12 T D^2 + 2 T^2 D (ViT-B at 224: 13 M instead of
        1.9 G, a twelfth of the forward). Same arithmetic otherwise, in another order: the
        CLS features agree with `forward`'s to float32 rounding (tests)."""
        cfg = self.config
        blk = self._blocks[-1]
        b, t, d = x.shape
        heads, hd, eps = cfg.heads, cfg.head_dim, cfg.layer_norm_eps
        ln = normalize_rows(x.reshape(b * t, d), _aligned_empty(b * t, d), eps,
                            _aligned_empty(b * t, 1), self._mean_col).reshape(b, t, d)
        w = blk.w_qkv.reshape(heads, 3, hd, d)
        bias = blk.b_qkv.reshape(heads, 3, hd)
        q = np.matmul(w[:, 0], ln[:, 0].T).transpose(2, 0, 1) + bias[:, 0]  # (B, heads, hd)
        g = np.matmul(q[:, :, None, :], w[:, 1])[:, :, 0]  # (B, heads, D): Wk^T q per head
        scores = np.matmul(g, ln.transpose(0, 2, 1))  # (B, heads, T)
        scores -= scores.max(axis=2, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=2, keepdims=True)
        pooled = np.matmul(scores, ln)  # (B, heads, D): sum_j p_j l_j per head
        heads_out = np.matmul(w[:, 2], pooled[..., None])[..., 0] + bias[:, 2]  # (B, heads, hd)
        xc = np.array(x[:, 0])  # (B, D)
        xc += np.matmul(heads_out.reshape(b, d), blk.w_proj.T)
        xc += blk.b_proj
        s = self._scratch[0]
        ln0 = normalize_rows(xc, s.get("ln", b, d), eps, s.get("stat", b, 1), self._mean_col)
        out = np.empty_like(xc)
        self._mlp(s, ln0, out, blk)
        out += blk.b_out
        xc += out
        self._final_norm(s, xc)
        return xc

    # -- features -------------------------------------------------------------------------

    def embed(self, pixels: NDArray[np.floating[Any]], patch_tokens: bool = False,
              mean_pooled: bool = False) -> EmbedResult:
        """(B, 3, H, W) -> CLS features, and on request the mean-pooled patches and the patch
        tokens, each L2-normalised float32. Either request runs the last block over every
        token (`forward`) and returns both; CLS alone takes `forward_cls`."""
        if not (patch_tokens or mean_pooled):
            return EmbedResult(cls=_l2(self.forward_cls(pixels)), mean_pooled=None, patch=None)
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
