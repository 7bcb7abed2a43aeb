"""Local features and their geometry: images → keypoints and descriptors (:mod:`.features`), and pure functions
that match two images' descriptors (:mod:`.matching`) and fit the transform between them (:mod:`.geometry`), so
that a copy is shown to correspond, with where."""
