"""The WIDER FACE val evaluator (``evaluation.py``) and its Cython helpers."""
