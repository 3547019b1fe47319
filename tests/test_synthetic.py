"""The synthetic writer's ground truth: exact by construction, whatever the batching."""

from __future__ import annotations

import numpy as np

from imexport.synthetic import AcquisitionSpec, expected_roi


def test_scene_ground_truth_does_not_depend_on_how_frames_are_batched():
    spec = AcquisitionSpec(n_frames=40, n_planes=2, n_colors=2, noise=3.0, texture=20.0, n_cells=60)
    frames = np.arange(spec.n_frames)
    for c, z, r in np.ndindex(2, 2, spec.n_rois):
        together = expected_roi(spec, frames, c, z, r)
        one_by_one = np.concatenate([expected_roi(spec, [t], c, z, r) for t in frames])
        odd_batches = np.concatenate([expected_roi(spec, frames[i : i + 7], c, z, r) for i in range(0, 40, 7)])
        np.testing.assert_array_equal(together, one_by_one)
        np.testing.assert_array_equal(together, odd_batches)
        assert together.std() > 50  # a real scene, not a constant
