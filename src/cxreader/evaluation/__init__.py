"""Evaluation: per-class AUROC with bootstrap CIs, operating thresholds, ROC plots, reports.

Follows CheXNet's protocol (Rajpurkar et al., 2017): AUROC per finding and its mean over the 14 findings.
"""
