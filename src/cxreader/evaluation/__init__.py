"""Evaluation: per-class AUROC with bootstrap CIs, operating thresholds, ROC plots, reports.

Follows CheXNet's protocol (Rajpurkar et al., 2017): AUROC per finding and its mean over the 14 findings, or
over the findings of a model trained on several datasets, per dataset and across datasets
(:mod:`cxreader.evaluation.cross_dataset`).
"""
