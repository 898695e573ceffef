"""Scenarios: users of the library, not part of its layers (like ``pints.toy``).

Virtual wards, synthetic patients, closed-loop harnesses and the demo: each
builds its world from the library (models, personalize, the twin, the
controllers) and runs it.  Nothing in the library layers imports from here.

=============================  ===========================================================
module                         what
=============================  ===========================================================
``scenarios.demo``             the vancomycin demo: a virtual ward, then one patient's twin
``scenarios.vanco_loop``       closed loop: true vancomycin patients, delayed levels, dose optimiser
``scenarios.glucose_patients`` synthetic ICU patients (Bergman minimal model) and their truth
``scenarios.glucose_loop``     closed loop: ICU glycaemic control with the twin and MPC
``scenarios.evaluation``       twin-guided vs standard of care over a virtual cohort
``scenarios.icu``              the ICU glycaemic twin: shipped spec, synthetic streams, tracking
``scenarios.continual``        synthetic regime switches and the continual-adaptation comparison
=============================  ===========================================================
"""
