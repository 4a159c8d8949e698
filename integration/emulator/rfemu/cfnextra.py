"""CloudFormation resource types moto 5.2.1 skips with a warning, that our stacks declare:

- AWS::SQS::QueuePolicy: sets each listed queue's Policy attribute (removed on delete).
- AWS::CloudWatch::Alarm: PutMetricAlarm with the resource's properties (metric and Metrics
  Insights alarms alike); deleted with the stack.
- AWS::Logs::MetricFilter: PutMetricFilter on the log group with the resource's pattern and
  transformations; deleted with the stack. (Only the filter exists: moto does not turn log
  events into metric data.)

They become CloudFormationModel subclasses; cloudformation.install() clears moto's cached type map
after every rfemu module is imported, so the launcher installs this module before it.
"""
from __future__ import annotations

import json
from typing import Any

from moto.cloudformation import parsing as cfp
from moto.core.common_models import CloudFormationModel


def _queue_name(url_or_name: str) -> str:
    return url_or_name.rstrip("/").split("/")[-1]


class CfnQueuePolicy(CloudFormationModel):
    def __init__(self, name: str, queues: list[str], account_id: str, region: str) -> None:
        self.name = name
        self.queues = queues
        self.account_id = account_id
        self.region = region

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SQS::QueuePolicy"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Id"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.name

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def _apply(queues: list[str], document: Any, account_id: str, region: str) -> None:
        from moto.sqs import sqs_backends

        backend = sqs_backends[account_id][region]
        policy = document if isinstance(document, str) else json.dumps(document)
        for q in queues:
            backend.set_queue_attributes(_queue_name(q), {"Policy": policy})

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str, **kwargs: Any) -> "CfnQueuePolicy":
        props = cloudformation_json.get("Properties", {})
        queues = list(props.get("Queues", []))
        cls._apply(queues, props.get("PolicyDocument", {}), account_id, region_name)
        return cls(resource_name, queues, account_id, region_name)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: Any, new_resource_name: str,  # type: ignore[override]
                                        cloudformation_json: dict[str, Any], account_id: str,
                                        region_name: str) -> "CfnQueuePolicy":
        original_resource.delete(account_id, region_name)
        props = cloudformation_json.get("Properties", {})
        queues = list(props.get("Queues", []))
        cls._apply(queues, props.get("PolicyDocument", {}), account_id, region_name)
        return cls(original_resource.name, queues, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str) -> None:
        cls(resource_name, list(cloudformation_json.get("Properties", {}).get("Queues", [])), account_id,
            region_name).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.sqs import sqs_backends

        backend = sqs_backends[account_id][region_name]
        for q in self.queues:
            try:
                backend.set_queue_attributes(_queue_name(q), {"Policy": ""})
            except Exception:  # the queue went first
                pass


class CfnAlarm(CloudFormationModel):
    def __init__(self, name: str) -> None:
        self.name = name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        from . import core

        return f"arn:aws:cloudwatch:{core.REGION}:{core.ACCOUNT_ID}:alarm:{self.name}"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def _put(name: str, props: dict[str, Any], account_id: str, region: str) -> None:
        from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat, cloudwatch_backends

        queries = None
        if props.get("Metrics"):
            queries = []
            for m in props["Metrics"]:
                stat = None
                ms = m.get("MetricStat") or {}
                if ms.get("Metric", {}).get("MetricName"):
                    dims = [Dimension(name=d.get("Name"), value=d.get("Value")) for d in ms["Metric"].get("Dimensions", [])]
                    stat = MetricStat(metric=Metric(metric_name=ms["Metric"]["MetricName"],
                                                    namespace=ms["Metric"].get("Namespace"), dimensions=dims),
                                      period=ms.get("Period"), stat=ms.get("Stat"), unit=ms.get("Unit"))
                queries.append(MetricDataQuery(query_id=m.get("Id"), label=m.get("Label"), period=m.get("Period"),
                                               return_data=m.get("ReturnData"), expression=m.get("Expression"),
                                               metric_stat=stat))

        def num(key: str) -> Any:
            v = props.get(key)
            return float(v) if key == "Threshold" and v is not None else (int(v) if v is not None else None)

        cloudwatch_backends[account_id][region].put_metric_alarm(
            name=name, namespace=props.get("Namespace"), metric_name=props.get("MetricName"),
            metric_data_queries=queries, comparison_operator=props.get("ComparisonOperator"),
            evaluation_periods=num("EvaluationPeriods"), datapoints_to_alarm=num("DatapointsToAlarm"),
            period=num("Period"), threshold=num("Threshold"), statistic=props.get("Statistic"),
            extended_statistic=props.get("ExtendedStatistic"), description=props.get("AlarmDescription"),
            dimensions=props.get("Dimensions") or [], alarm_actions=props.get("AlarmActions") or [],
            ok_actions=props.get("OKActions") or [], insufficient_data_actions=props.get("InsufficientDataActions") or [],
            unit=props.get("Unit"), actions_enabled=props.get("ActionsEnabled", True) in (True, "true", "True"),
            treat_missing_data=props.get("TreatMissingData"),
            evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=props.get("ThresholdMetricId"), rule=None, tags=[],
        )

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str, **kwargs: Any) -> "CfnAlarm":
        props = cloudformation_json.get("Properties", {})
        name = props.get("AlarmName") or resource_name
        cls._put(name, props, account_id, region_name)
        return cls(name)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: Any, new_resource_name: str,  # type: ignore[override]
                                        cloudformation_json: dict[str, Any], account_id: str,
                                        region_name: str) -> "CfnAlarm":
        props = cloudformation_json.get("Properties", {})
        name = props.get("AlarmName") or original_resource.name
        if name != original_resource.name:
            original_resource.delete(account_id, region_name)
        cls._put(name, props, account_id, region_name)
        return cls(name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str) -> None:
        cls(resource_name).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.cloudwatch.models import cloudwatch_backends

        cloudwatch_backends[account_id][region_name].delete_alarms([self.name])


class CfnMetricFilter(CloudFormationModel):
    def __init__(self, name: str, log_group: str) -> None:
        self.name = name
        self.log_group = log_group

    @staticmethod
    def cloudformation_name_type() -> str:
        return "FilterName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Logs::MetricFilter"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def _put(name: str, props: dict[str, Any], account_id: str, region: str) -> None:
        from moto.logs.models import logs_backends

        transformations = []
        for t in props.get("MetricTransformations") or []:
            item = {"metricName": t.get("MetricName"), "metricNamespace": t.get("MetricNamespace"),
                    "metricValue": str(t.get("MetricValue"))}
            if t.get("DefaultValue") is not None:
                item["defaultValue"] = float(t["DefaultValue"])
            transformations.append(item)
        logs_backends[account_id][region].put_metric_filter(name, props.get("FilterPattern", ""),
                                                            props.get("LogGroupName"), transformations)

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str, **kwargs: Any) -> "CfnMetricFilter":
        props = cloudformation_json.get("Properties", {})
        name = props.get("FilterName") or resource_name
        cls._put(name, props, account_id, region_name)
        return cls(name, props.get("LogGroupName"))

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: Any, new_resource_name: str,  # type: ignore[override]
                                        cloudformation_json: dict[str, Any], account_id: str,
                                        region_name: str) -> "CfnMetricFilter":
        original_resource.delete(account_id, region_name)
        props = cloudformation_json.get("Properties", {})
        name = props.get("FilterName") or original_resource.name
        cls._put(name, props, account_id, region_name)
        return cls(name, props.get("LogGroupName"))

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str) -> None:
        props = cloudformation_json.get("Properties", {})
        cls(props.get("FilterName") or resource_name, props.get("LogGroupName")).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.logs.models import logs_backends

        logs_backends[account_id][region_name].delete_metric_filter(self.name, self.log_group)


def install() -> None:
    # The subclasses above exist once this module is imported; refresh moto's cached type map.
    cfp.get_model_list.cache_clear()
    cfp.get_model_map.cache_clear()
    cfp.get_name_type_map.cache_clear()
