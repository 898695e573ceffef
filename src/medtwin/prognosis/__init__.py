"""Prognosis: hazards, cumulative incidence, competing risks, joint models, dynamic prediction, exposure-toxicity.

Modules: :mod:`~medtwin.prognosis.hazards` (parametric PH families, exact or quadrature CIF),
:mod:`~medtwin.prognosis.cox` (Cox PH, counting-process data, Breslow/Efron ties),
:mod:`~medtwin.prognosis.competing` (Aalen–Johansen, cause-specific CIF),
:mod:`~medtwin.prognosis.joint` (longitudinal + survival joint model, dynamic prediction),
:mod:`~medtwin.prognosis.toxicity` (vancomycin exposure → P(AKI within 7 days)).
"""
