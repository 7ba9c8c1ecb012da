"""Learned captions: annotation pairs, their token vocabulary, and training and decoding of the CNN + RNN
captioner.

In the spirit of Shin et al., "Learning to Read Chest X-Rays: Recurrent Neural Cascade Model for Automated
Image Annotation", CVPR 2016.
"""
