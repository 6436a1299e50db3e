"""The synthesized CloudFormation template, read the way CloudFormation reads it.

Physical names are given as CloudFormation would (`<stack>-<logical id>`), and the intrinsic
functions the CDK emits (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, Fn::If
on conditions we do not use) are resolved against them.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


@dataclass
class Resource:
    logical_id: str
    type: str
    properties: dict
    depends_on: list[str]


@dataclass
class StackTemplate:
    name: str
    body: dict
    region: str = REGION
    account: str = ACCOUNT
    # Attributes of created resources: logical id -> {"Ref": ..., "Arn": ..., ...}
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, name: str) -> "StackTemplate":
        return cls(name=name, body=json.loads(Path(path).read_text()))

    @property
    def resources(self) -> dict[str, Resource]:
        out = {}
        for logical_id, raw in self.body["Resources"].items():
            depends = raw.get("DependsOn", [])
            out[logical_id] = Resource(
                logical_id, raw["Type"], raw.get("Properties", {}), [depends] if isinstance(depends, str) else depends
            )
        return out

    def physical_name(self, logical_id: str, *, lowercase: bool = False, limit: int = 64) -> str:
        name = f"{self.name}-{logical_id}"[:limit]
        return name.lower() if lowercase else name

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def creation_order(self) -> list[Resource]:
        """Resources sorted so that each comes after everything it refers to."""
        resources = self.resources
        deps = {lid: set(r.depends_on) | _references(r.properties) for lid, r in resources.items()}
        order, done = [], set()

        def visit(lid: str, path: tuple[str, ...] = ()) -> None:
            if lid in done or lid not in resources:
                return
            if lid in path:
                raise ValueError(f"circular dependency through {lid}")
            for dep in sorted(deps[lid]):
                visit(dep, path + (lid,))
            done.add(lid)
            order.append(resources[lid])

        for lid in resources:
            visit(lid)
        return order

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._attribute(logical_id, attribute)
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in parts)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, source = arg
                return str(self.resolve(source)).split(separator)
        return {k: self.resolve(v) for k, v in value.items()}

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.name,
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.body.get("Parameters", {}):
            return self.body["Parameters"][name].get("Default")
        return self._attribute(name, "Ref")

    def _attribute(self, logical_id: str, attribute: str) -> Any:
        try:
            return self.attributes[logical_id][attribute]
        except KeyError:
            raise KeyError(f"{logical_id}.{attribute} is not known (yet)") from None

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return str(self._attribute(*name.split(".", 1)))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def outputs(self) -> dict[str, Any]:
        return {name: self.resolve(o["Value"]) for name, o in self.body.get("Outputs", {}).items()}


def _references(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= _references(v)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str) and not arg.startswith("AWS::"):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else arg.split(".")[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text) if not m.startswith("AWS::")}
                if not isinstance(arg, str):
                    found |= _references(arg[1])
            else:
                found |= _references(arg)
    return found
