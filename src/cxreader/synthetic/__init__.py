"""The SYNTHETIC world: a chest radiograph phantom and a dataset writer in the NIH ChestX-ray14 layout.

A test and demo instrument, not a simulation of radiography, outside the layers of the reader: only
``cxreader data synth``, ``cxreader demo``, the tests and the benchmarks import it, and nothing in the stack
does. Everything it draws is labelled synthetic. Modules, lowest first:

- :mod:`~cxreader.synthetic.anatomy`: the normal anatomy of one image (lungs, heart, hila, ribs, exposure);
- :mod:`~cxreader.synthetic.render`: the scene's fields and layers, and the 8-bit image;
- :mod:`~cxreader.synthetic.findings`: the 14 findings, their records, and :func:`draw_chest`;
- :mod:`~cxreader.synthetic.dataset`: :func:`generate_synthetic_dataset`, the NIH-layout writer with its
  ground-truth sidecars (their reader is :mod:`cxreader.data.sidecars`).
"""
