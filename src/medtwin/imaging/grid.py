"""P1 finite elements on a pixel (voxel) grid: the discrete shear-wave operator the inversion differentiates.

The nodes are the image's pixel centres (spacing ``h``, m); each pixel square is cut into two triangles
(each voxel cube into six tetrahedra).  With a P1 modulus field the element integral of
``G* grad(phi_i) . grad(phi_j)`` is exact with the element mean of the nodal G* (the gradients are constant),
so ``A(G*) = sum_e mean_e(G*) K_e - rho omega^2 M`` is assembled by one weighted scatter into a fixed
sparsity pattern (no quadrature per iteration), and ``dA/dG*_node`` is ``K_e / (dim + 1)`` on each element
holding the node.  The same operator, assembled by scikit-fem, is the reference of the unit test.

Examples
--------
>>> import numpy as np
>>> op = GridOperator((5, 4), 1e-3)
>>> op.n_nodes, op.n_elements, round(float(op.area.sum()) * 1e6, 6)    # 12 pixels of 1 mm^2: 24 triangles
(20, 24, 12.0)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from medtwin.errors import DataError

__all__ = ["GridOperator"]

# The six tetrahedra of a cube (Kuhn triangulation), vertices as (i, j, k) offsets.
_KUHN = [((0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1)), ((0, 0, 0), (1, 0, 0), (1, 0, 1), (1, 1, 1)),
         ((0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 1, 1)), ((0, 0, 0), (0, 1, 0), (0, 1, 1), (1, 1, 1)),
         ((0, 0, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1)), ((0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1))]


class GridOperator:
    """The P1 shear-wave operator on a grid of ``shape`` nodes (2-D or 3-D) with spacing ``h`` (m).

    Attributes
    ----------
    points : ndarray (dim, n_nodes)
        Node coordinates (m), C order over ``shape`` (axis 0 first).
    elements : ndarray (n_elements, dim + 1)
        Node indices of each simplex.
    area : ndarray (n_elements,)
        Element measure (m^dim).
    grads : ndarray (n_elements, dim + 1, dim)
        Gradients of the barycentric functions (1/m).
    boundary : ndarray of int
        Nodes on the grid's outer faces; ``interior`` the others.
    """

    def __init__(self, shape, h: float):
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3) or min(shape) < 3:
            raise DataError(f"grid shape must be 2-D or 3-D with at least 3 nodes a side, got {shape}")
        if not h > 0:
            raise DataError(f"pixel spacing must be positive (m), got {h}")
        self.shape, self.h, self.dim = shape, float(h), len(shape)
        idx = np.arange(int(np.prod(shape))).reshape(shape)
        axes = np.meshgrid(*[np.arange(s) * h for s in shape], indexing="ij")
        self.points = np.stack([a.ravel() for a in axes])
        self.elements = self._simplices(idx)
        self._geometry()
        on_edge = np.zeros(shape, dtype=bool)
        for ax in range(self.dim):
            sl = [slice(None)] * self.dim
            sl[ax] = 0
            on_edge[tuple(sl)] = True
            sl[ax] = -1
            on_edge[tuple(sl)] = True
        self.boundary = idx[on_edge]
        self.interior = idx[~on_edge]
        self._pattern()

    @property
    def n_nodes(self) -> int:
        return self.points.shape[1]

    @property
    def n_elements(self) -> int:
        return self.elements.shape[0]

    def _simplices(self, idx):
        if self.dim == 2:
            a, b = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel()
            c, d = idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
            return np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
        n0, n1, n2 = (s - 1 for s in idx.shape)
        tets = []
        for simplex in _KUHN:
            tets.append(np.stack([idx[i:i + n0, j:j + n1, k:k + n2].ravel() for i, j, k in simplex], 1))
        return np.concatenate(tets)

    def _geometry(self):
        X = self.points.T[self.elements]                      # (ne, d+1, d)
        J = (X[:, 1:, :] - X[:, :1, :]).transpose(0, 2, 1)   # columns: edge vectors
        det = np.linalg.det(J)
        self.area = np.abs(det) / (1.0 if self.dim == 2 else 3.0) / 2.0
        inv = np.linalg.inv(J)                                 # rows: grads of barycentrics 1..d
        g = np.concatenate([-inv.sum(axis=1, keepdims=True), inv], axis=1)
        self.grads = g                                          # (ne, d+1, d)
        self._kloc = np.einsum("e,eid,ejd->eij", self.area, g, g)
        m = np.full((self.dim + 1, self.dim + 1), 1.0) + np.eye(self.dim + 1)
        scale = 12.0 if self.dim == 2 else 20.0
        self._mloc = self.area[:, None, None] * m[None] / scale

    def _pattern(self):
        e = self.elements
        k = self.dim + 1
        rows = np.repeat(e, k, axis=1).ravel()
        cols = np.tile(e, (1, k)).ravel()
        n = self.n_nodes
        template = sp.coo_matrix((np.arange(rows.size, dtype=float) + 1, (rows, cols)), shape=(n, n)).tocsr()
        template.sum_duplicates()
        # map every COO entry to its CSR slot
        key = rows.astype(np.int64) * n + cols
        csr_rows = np.repeat(np.arange(n), np.diff(template.indptr))
        csr_key = csr_rows.astype(np.int64) * n + template.indices
        order = np.argsort(csr_key)
        self._slot = order[np.searchsorted(csr_key[order], key)]
        self._indptr, self._indices = template.indptr.copy(), template.indices.copy()
        self.mass_consistent = self._assemble(self._mloc.reshape(-1))
        lumped = np.asarray(self.mass_consistent.sum(axis=1)).ravel()
        # half consistent, half lumped: cancels the leading O((kh)^2) phase error of P1 on a uniform grid
        self.mass = (0.5 * self.mass_consistent + 0.5 * sp.diags(lumped)).tocsr()

    def _assemble(self, values):
        data = np.bincount(self._slot, weights=values.real, minlength=self._indices.size)
        if np.iscomplexobj(values):
            data = data + 1j * np.bincount(self._slot, weights=values.imag, minlength=self._indices.size)
        n = self.n_nodes
        return sp.csr_matrix((data, self._indices, self._indptr), shape=(n, n))

    def element_mean(self, nodal):
        """Element means of a nodal field (n_nodes,) -> (n_elements,)."""
        return np.asarray(nodal)[self.elements].mean(axis=1)

    def stiffness(self, g_nodal):
        """``sum_e mean_e(G*) K_e`` (N/m-like units: Pa * m^(dim-2)), sparse (n_nodes, n_nodes)."""
        ge = self.element_mean(g_nodal)
        return self._assemble((ge[:, None, None] * self._kloc).reshape(-1))

    def operator(self, g_nodal, rho: float, omega: float):
        """``A(G*) = K(G*) - rho omega^2 M``."""
        return self.stiffness(g_nodal) - (rho * omega ** 2) * self.mass

    def element_gradient(self, field):
        """Gradient of a nodal P1 field (n_nodes, ...) on each element: (n_elements, dim, ...)."""
        f = np.asarray(field)[self.elements]                   # (ne, d+1, ...)
        return np.einsum("eid,ei...->ed...", self.grads, f)

    def scatter(self, element_values):
        """Nodal sums of element values each shared equally by the element's nodes: the adjoint of
        :meth:`element_mean` (n_elements,) -> (n_nodes,)."""
        k = self.dim + 1
        v = np.repeat(np.asarray(element_values) / k, k)
        return np.bincount(self.elements.ravel(), weights=v, minlength=self.n_nodes)

    def element_to_nodes(self, element_values):
        """The adjoint of :meth:`element_gradient` for a vector per element (n_elements, dim) -> (n_nodes,)."""
        contrib = np.einsum("eid,ed->ei", self.grads, element_values)
        return np.bincount(self.elements.ravel(), weights=contrib.ravel(), minlength=self.n_nodes)
