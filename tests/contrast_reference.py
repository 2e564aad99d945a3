"""An independent numpy/scipy reference of the region contrast (the library's is torch: losses.region_contrasts),
written out step by step so that tests can check the library against it."""
from typing import Optional

import numpy as np
from scipy.ndimage import binary_dilation


def surrounding(region: np.ndarray, within: Optional[np.ndarray] = None, width: int = 5) -> np.ndarray:
    """The voxels within ``width`` voxels of ``region`` (a cube neighbourhood), outside it, inside ``within``."""
    shell = binary_dilation(region, np.ones((3,) * region.ndim, dtype=bool), iterations=width) & ~region
    return shell & within if within is not None else shell


def region_contrast(image: np.ndarray, region: np.ndarray, around: np.ndarray) -> float:
    """|mean inside − mean of around| / sd of around; NaN where either is empty or around is flat."""
    image = np.asarray(image, dtype=np.float64)
    if not region.any() or around.sum() < 2 or image[around].std() == 0:
        return float("nan")
    return float(abs(image[region].mean() - image[around].mean()) / image[around].std())
