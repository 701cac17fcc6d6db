"""Graph IR: typed SSA values, nodes, graphs, the printer and the verifier."""

from cnnc.ir.graph import Graph
from cnnc.ir.node import Node, Value
from cnnc.ir.printer import format_graph, format_node
from cnnc.ir.types import TensorType
from cnnc.ir.verify import verify

__all__ = ["Graph", "Node", "Value", "TensorType", "verify", "format_graph", "format_node"]
