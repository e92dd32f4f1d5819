"""The Bayesian-optimisation engine shared by the model-based methods (Ray-free): see raynas.bo.engine."""
