"""The choice of evaluation for an image: whole, streamed in bands, or tile by tile, within a memory budget."""

from __future__ import annotations

from ..errors import JaxstyleError
from ..optim import lbfgs
from . import bands, tiling
from .memory import (BAND_CHOICES, BASE_BYTES, KEEP_MIN_ROWS, PLANNED, TILE_CHOICES, WHOLE, banded_bytes, budget,
                     memory_limit, state_bytes_per_pixel, tiled_bytes, untiled_bytes)


def choose_plan(height: int, width: int, layers, *, max_memory: float | None = None,
                tile: int | None = None, what: str = "the image", margin: int = 0, streamable: bool = False,
                whole: lbfgs.Memory = WHOLE, planned: lbfgs.Memory = PLANNED):
    """``None`` (evaluate whole), a band plan (``jaxstyle.evaluate.bands``) or a tile plan for an image of this size.

    Args:
      layers: every layer the objective reads.
      max_memory: budget in bytes; default :func:`~jaxstyle.evaluate.memory.budget`'s (70% of what the
        process may use: :func:`~jaxstyle.evaluate.memory.memory_limit`).
      tile: force tiling with cores of this many pixels, or bands of this many rows when
        ``streamable`` (``0``: never tile); more than the image's long side means the whole side.
      what: names the image in the error message.
      margin: extra halo in pixels (:func:`make_plan`).
      streamable: the objective can be evaluated in streamed bands (every loss but MRF).
      whole, planned: the L-BFGS memory of the run evaluated whole, and by a plan
        (``StyleConfig.lbfgs_memory_for``).

    Returns:
      ``None`` when the image fits untiled (or ``tile == 0``); else, when ``streamable``, the band
      plan with the most rows in :data:`BAND_CHOICES` whose estimate fits keeping block 4's
      outputs (:data:`bands.KEEP`, a third of the recomputation saved) with at least
      :data:`KEEP_MIN_ROWS` rows, else the most rows that fit without keeping;
      otherwise the tile plan with the largest core in :data:`TILE_CHOICES` whose estimate fits.
      The band plan's ``tile`` is the core size for the targets (forward only, tile by tile).
      Raises :class:`JaxstyleError` when nothing fits.
    """
    limit = memory_limit()
    allowed, source = budget(max_memory, limit)
    hard = max(allowed, limit.available)  # what a forced --tile may use: all that is available
    if tile:
        tile = min(int(tile), max(height, width))
    refusal = None
    try:
        tiles = _choose_tiles(height, width, layers, allowed, source, hard, tile, what, margin, whole, planned)
    except JaxstyleError as error:
        if not streamable or tile == 0:
            raise
        tiles, refusal = None, error  # bands need less than tiles: they may still fit
    if refusal is None and (tiles is None or not streamable):
        return tiles
    # Keeping block 4 saved 11% of an evaluation at 1024x768, twice as many rows per band 7% (docs/benchmarks.md);
    # bands of fewer than KEEP_MIN_ROWS rows are not worth keeping for: more rows are tried first.
    choices = [(tile, keep) for keep in (bands.KEEP, ())] if tile else (
        [(rows, bands.KEEP) for rows in BAND_CHOICES if rows >= KEEP_MIN_ROWS] + [(rows, ()) for rows in BAND_CHOICES])
    core = tiles.tile if tiles is not None else TILE_CHOICES[-1]  # the targets' crops (forward only)
    plans = [bands.make_plan(height, width, rows, layers, keep, core) for rows, keep in choices]
    fitting = next((plan for plan in plans if banded_bytes(plan, planned) <= (hard if tile else allowed)), None)
    if fitting is None and refusal is not None:
        raise refusal
    return fitting or tiles


def _choose_tiles(height, width, layers, budget, source, hard, tile, what, margin, whole, planned):
    if tile is not None:
        limit = hard
        if tile == 0:
            if untiled_bytes(height, width, whole) > limit:
                raise JaxstyleError(
                    f"{what} ({width}x{height}) needs about {untiled_bytes(height, width, whole) / 2**30:.1f} GB untiled, more "
                    f"than this machine has: drop --tile 0 (it then runs tile by tile) or lower --size")
            return None
        if BASE_BYTES + state_bytes_per_pixel(planned) * height * width > limit:  # before enumerating the tiles
            raise JaxstyleError(
                f"{what} ({width}x{height}) needs more than {limit / 2**30:.1f} GB even tiled, more than this machine has: "
                f"make it at most {largest_fitting_size(height, width, layers, limit, margin, planned)} px on its long side (lower --size)")
        plan = tiling.make_plan(height, width, tile, layers, margin=margin)
        if tiled_bytes(plan, planned) > limit:
            raise JaxstyleError(
                f"{what} ({width}x{height}) needs about {tiled_bytes(plan, planned) / 2**30:.1f} GB tiled at {tile} px, more than "
                "this machine has: use a smaller --tile, or lower --size")
        return plan
    if untiled_bytes(height, width, whole) <= budget:
        return None
    for core in TILE_CHOICES:
        plan = tiling.make_plan(height, width, core, layers, margin=margin)
        if tiled_bytes(plan, planned) <= budget:
            return plan
    smallest = tiling.make_plan(height, width, TILE_CHOICES[-1], layers, margin=margin)
    raise JaxstyleError(
        f"{what} ({width}x{height}) needs about {tiled_bytes(smallest, planned) / 2**30:.1f} GB even tiled at "
        f"{TILE_CHOICES[-1]} px, over the {budget / 2**30:.1f} GB budget ({source}): make it at most "
        f"{largest_fitting_size(height, width, layers, budget, margin, planned)} px on its long side (lower --size or --style-scale) "
        "or raise --max-memory"
    )


def largest_fitting_size(height: int, width: int, layers, budget: float, margin: int = 0,
                         memory: lbfgs.Memory = PLANNED) -> int:
    """The largest long side at this aspect ratio whose smallest-tile plan fits ``budget`` bytes."""
    def fits(long_side: int) -> bool:
        scale = long_side / max(height, width)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        return tiled_bytes(tiling.make_plan(h, w, TILE_CHOICES[-1], layers, margin=margin), memory) <= budget

    low, high = 16, max(height, width)
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low
