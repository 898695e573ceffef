"""The twin as a simulator for reinforcement learning, with honest off-policy evaluation.

=====================  =================================================================
module                 what
=====================  =================================================================
``rl.envs``            gymnasium environments (ICU glucose, vancomycin), single and vector
``rl.dynamics``        batched virtual patients (RK4 on the model's vector field; exact PK)
``rl.data``            logged episodes (state, action, reward, propensity, cost); Parquet
``rl.trajectories``    logging episodes from environments and the closed-loop harnesses
``rl.mdp``             tabular MDPs, exact DP, the ICU-Sepsis benchmark MDP
``rl.fqi``             fitted Q iteration, its conservative variants, fitted Q evaluation
``rl.ope``             PDIS, WIS, doubly robust, FQE with bootstrap CIs, ESS, diagnostics
``rl.policy``          learned policies as ``propose(twin) -> Recommendation`` with a shield
``rl.harness``         learned policies in the closed-loop harnesses (beside MPC, protocol)
=====================  =================================================================

Layer: ``rl`` sits above ``scenarios`` (its environments are built from the
shipped virtual patients) and below the front ends; see docs/rl.md and
docs/decisions.md.  Importing ``medtwin.rl.envs`` registers the gymnasium ids.
"""
