"""aMINT: Active Membership Inference Test.

An audited classifier trained jointly with a small MINT head that reads its activation maps and says
whether an input was in the training set. The library never imports gradio and never prints.
"""

__version__ = "0.1.0"
