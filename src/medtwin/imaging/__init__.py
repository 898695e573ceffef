"""Imaging twin: MR elastography forward model and stiffness inversion.

* :mod:`~medtwin.imaging.forward`: the time-harmonic viscoelastic wave equation with scikit-fem (scalar
  shear-wave P1/P2 and nearly incompressible Taylor-Hood vector forms, 2-D and 3-D), analytic plane waves.
* :mod:`~medtwin.imaging.phantoms`: homogeneous, inclusion and liver-like G*(x) fields.
* :mod:`~medtwin.imaging.synthetic`: displacement images on a finer mesh, with Gaussian noise.
* :mod:`~medtwin.imaging.helmholtz`: algebraic Helmholtz inversion (the clinical baseline).
* :mod:`~medtwin.imaging.grid`, :mod:`~medtwin.imaging.inversion`: regularised FEM inversion (adjoint
  gradient, TV / Tikhonov, discrepancy principle).
* :mod:`~medtwin.imaging.elastogram`: bootstrap uncertainty, ROI summaries (kPa, 95 % CI), fibrosis stage.
* :mod:`~medtwin.imaging.plots`: stiffness maps.

Pure numerics: files are read and written in :mod:`medtwin.io.mre_file`.
"""

from medtwin.imaging.elastogram import CUTOFFS, Elastogram, RoiSummary, analyse, bootstrap, fibrosis_stage
from medtwin.imaging.forward import solve_scalar, solve_vector
from medtwin.imaging.model import FORWARD_MODEL, ForwardModel
from medtwin.imaging.helmholtz import helmholtz_inversion
from medtwin.imaging.inversion import InversionResult, estimate_noise, invert
from medtwin.imaging.phantoms import Phantom, homogeneous_phantom, inclusion_phantom, liver_phantom
from medtwin.imaging.synthetic import Acquisition, add_noise, synthesize

__all__ = ["Acquisition", "CUTOFFS", "Elastogram", "FORWARD_MODEL", "ForwardModel", "InversionResult", "Phantom",
           "RoiSummary", "add_noise", "analyse", "bootstrap", "estimate_noise", "fibrosis_stage",
           "helmholtz_inversion", "homogeneous_phantom", "inclusion_phantom", "invert", "liver_phantom",
           "solve_scalar", "solve_vector", "synthesize"]
