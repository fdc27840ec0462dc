"""Independent references for the CKA-family tests, written here from the papers, never from layer_sim.

Kornblith et al. (2019)'s reference code (``gram_linear``, ``gram_rbf``, ``center_gram``, ``cka``)
transcribed to NumPy, and Song et al. (2012)'s unbiased HSIC_1 term by term.
"""

import numpy as np


def ref_gram_linear(x):
    return x @ x.T


def ref_gram_rbf(x, threshold):
    """Kornblith et al.'s gram_rbf: bandwidth from np.median of the full squared-distance matrix."""
    dots = x @ x.T
    sq = np.diag(dots)
    d2 = -2 * dots + sq[:, None] + sq[None, :]
    return np.exp(-d2 / (2 * threshold**2 * np.median(d2)))


def ref_center_gram(gram, unbiased):
    gram = gram.copy()
    n = gram.shape[0]
    if unbiased:
        np.fill_diagonal(gram, 0)
        means = gram.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        gram -= means[:, None] + means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = gram.mean(0)
        means -= means.mean() / 2
        gram -= means[:, None] + means[None, :]
    return gram


def ref_cka(gx, gy, debiased=False):
    gx, gy = ref_center_gram(gx, debiased), ref_center_gram(gy, debiased)
    return (gx * gy).sum() / (np.linalg.norm(gx) * np.linalg.norm(gy))


def song_hsic1(K, L):
    """Song et al. (2012), eq. (5), term by term on uncentred Grams with zeroed diagonals."""
    n = K.shape[0]
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    return (
        np.trace(Kt @ Lt)
        + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one @ Kt @ Lt @ one)
    ) / (n * (n - 3))


def song_cka(K, L):
    return song_hsic1(K, L) / np.sqrt(song_hsic1(K, K) * song_hsic1(L, L))


def data(seed, n, p, q=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    y = x[:, : min(p, q or p)] @ rng.standard_normal((min(p, q or p), q or p)) + rng.standard_normal((n, q or p))
    return x, y


def orthogonal(rng, p):
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))
