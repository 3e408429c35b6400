"""Written by genzoo: no model code here.

This file lets plain Diffusers load this repository with the classes of the installed genzoo package
(``pip install genzoo``) and its registered plugins:

    diffusers.DiffusionPipeline.from_pretrained(<this repo>, trust_remote_code=True)

genzoo itself never runs this file; ``genzoo.load_pipeline(<this repo>)`` reads the class names instead.
"""

import genzoo.registry


def __getattr__(name):
    return genzoo.registry.find_component_class(name)
