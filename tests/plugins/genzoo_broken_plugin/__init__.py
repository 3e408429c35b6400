"""A broken genzoo plugin (test fixture): it needs a package that is not installed, so importing it fails. genzoo
must report it (``genzoo list`` shows it as BROKEN) and keep every other component working."""

import genzoo_missing_dependency  # noqa: F401  (deliberately not installed anywhere)

from genzoo.pipelines import GANPipeline


class BrokenPipeline(GANPipeline):
    pass
