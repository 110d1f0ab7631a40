"""Studies: how quality and cost move with a sampling setting, without retraining.

One module per study, each run by a sub-command of ``python -m comparisons.studies`` (``cli.py``):

* ``steps``: quality and time against the number of sampling steps (a benchmark run per count);
* ``spread``: one sample against the mean of several seeds, why more steps can cost PSNR;
* ``cascade``: chains of small-scale models against one large-scale model, at equal NFE and time;
* ``reconstruction``: a first stage's encode-decode fidelity, the ceiling of the LDMs built on it.

Every image a study scores goes through ``comparisons.evaluate.evaluate`` (the benchmark's protocol),
and every run card takes its provenance from ``comparisons.provenance``. A new study is one module
here, its sub-command in ``cli.SUB_COMMANDS`` and, when it ships results, its Studies-tab entry
(``ui/studies.py``).
"""
