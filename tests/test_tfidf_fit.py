"""Fitting a tfidf-svd encoder in the container (shared/encoders/tfidf_fit.py): scipy's truncated
SVD gives the top singular directions (what a tenant's own space is built on), the state it
returns encodes as the shipped encoder does, and a matrix too small for ARPACK still fits."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from shared.encoders.tfidf_fit import exact_svd, fit_tfidf_svd


def _projector(rows: np.ndarray) -> np.ndarray:
    return rows.T @ rows


def test_the_exact_solver_finds_the_top_singular_subspace() -> None:
    rng = np.random.default_rng(0)
    # a low-rank signal plus noise, so the top directions are well separated
    dense = rng.standard_normal((120, 6)) @ rng.standard_normal((6, 300)) * 3 + 0.1 * rng.standard_normal((120, 300))
    matrix = sp.csr_matrix(dense)
    vt = exact_svd(matrix, 6, seed=0)
    assert vt.shape == (6, 300)
    assert np.allclose(vt @ vt.T, np.eye(6), atol=1e-8)
    truth = np.linalg.svd(dense, full_matrices=False)[2][:6]
    assert np.allclose(_projector(vt), _projector(truth), atol=1e-6)
    # in decreasing order of singular value, as the encoder's basis is kept
    energy = np.linalg.norm(dense @ vt.T, axis=0)
    assert list(energy) == sorted(energy, reverse=True)
    # the same seed, the same basis (a refit of an unchanged tenant gives the same space)
    assert np.allclose(np.abs(exact_svd(matrix, 6, seed=0)), np.abs(vt))


def test_a_matrix_smaller_than_the_basis_is_decomposed_whole() -> None:
    matrix = sp.csr_matrix(np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 1.0]]))
    vt = exact_svd(matrix, 2, seed=0)
    assert vt.shape == (2, 2) and np.allclose(vt @ vt.T, np.eye(2))


def test_a_fitted_encoder_places_prompts_of_one_kind_together() -> None:
    rng = np.random.default_rng(1)
    filler = ["please", "help", "with", "this", "question", "about", "the", "task"]
    texts = [
        " ".join([*rng.choice(filler, size=5), "integral antiderivative" if i % 2 else "matrix determinant", str(i)])
        for i in range(200)
    ]
    encoder = fit_tfidf_svd(texts, dim=16)
    vectors = encoder.encode(texts)
    assert vectors.shape == (200, 16) and encoder.dim == 16
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    kind = np.arange(200) % 2
    sims = vectors @ vectors.T
    same = sims[kind[:, None] == kind[None, :]].mean()
    other = sims[kind[:, None] != kind[None, :]].mean()
    assert same > other + 0.1
    # encode_one is what a decision calls: the same vector as the batch
    assert np.allclose(encoder.encode_one(texts[5]), vectors[5], atol=1e-6)


def test_support_counts_the_ngrams_the_basis_knows_and_stops_when_told() -> None:
    """What a prompt's vector rests on: its words and word pairs kept in the basis (min_df 2 keeps
    those of two prompts or more); an unknown word adds nothing."""
    texts = [f"integral of x squared number {i}" for i in range(40)] + ["matrix determinant"] * 5
    encoder = fit_tfidf_svd(texts, dim=4)
    # integral, of, x, squared, and the pairs between them: 7 known; "zebra" and its pair are not
    assert encoder.support("integral of x squared") == 7
    assert encoder.support("integral of x squared zebra") == 7
    assert encoder.support("zebra") == 0 and encoder.support("") == 0
    assert encoder.support("integral of x squared", enough=3) == 3
    assert encoder.support("matrix determinant") == 3
