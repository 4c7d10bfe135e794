"""Analytics over the record: SQL on FHIR v2 views, compiled once and run over resources.

The entry point is `compile_view(view_json) -> CompiledView`, with `.columns` and
`.rows(resources)`. Nothing here writes to the clinical record.
"""

from bevan.analytics.view_definition import (
    Column,
    CompiledView,
    ViewDefinitionError,
    ViewRunError,
    compile_view,
)

__all__ = ["Column", "CompiledView", "ViewDefinitionError", "ViewRunError", "compile_view"]
