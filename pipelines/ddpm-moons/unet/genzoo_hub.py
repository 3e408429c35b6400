"""Written by genzoo: no model code here.

This file lets plain Diffusers load this repository with the classes of the installed genzoo package and its
registered plugins:

    diffusers.DiffusionPipeline.from_pretrained(<this repo>, trust_remote_code=True)

Install genzoo from its repository first: pip install "genzoo @ git+https://github.com/genzoo/genzoo"
(once genzoo is on PyPI: pip install genzoo).

genzoo itself never runs this file; ``genzoo.load_pipeline(<this repo>)`` reads the class names instead.
"""

import genzoo.registry


def __getattr__(name):
    return genzoo.registry.find_component_class(name)
