"""An app written for cjm-fasthtml-workers 0.0.5 (seed 002), moved to cjm_workers by changing its imports only.

It is shaped like that library's own demo app and uses objects shaped like its companion libraries' real ones:
a `UnifiedPluginRegistry` whose metadata has `name` and `get_unique_id()` (cjm-fasthtml-plugins), a
`ResourceManager` with `WorkerState`s that ignores `None` updates (cjm-fasthtml-resources) and an
`SSEBroadcastManager` with connection queues and history (cjm-fasthtml-sse). Its plugins, like every plugin
written for that library, never check for cancellation. Spawned workers import this module by name, so it lives
beside the tests (which put this folder on `sys.path`) and has no side effects at import.
"""
import asyncio, json, os, time, uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

from fasthtml.common import Button, Div, Li, P, Table, Td, Tr, Ul, fast_app

# --- the seed's imports, with `cjm_fasthtml_workers` changed to `cjm_workers`
from cjm_workers.managers.base import BaseJobManager, BaseJob, JobType
from cjm_workers.core.worker import base_worker_process
from cjm_workers.core.config import WorkerConfig, RestartPolicy
from cjm_workers.core.protocol import WorkerRequestType, WorkerResponseType, PluginManagerAdapter
from cjm_workers.core.adapters import create_simple_adapter, default_result_adapter
from cjm_workers.extensions.protocols import PluginRegistryProtocol, ResourceManagerProtocol, EventBroadcasterProtocol
from cjm_workers.extensions.adapters import create_standard_adapters


# --- the plugin system the workers run (a plugin manager as cjm-plugin-system's, much smaller)
@dataclass
class PluginData:
    name: str
    version: str = "1.0.0"


class TextProcessorManager:
    "Plugins that never check for cancellation; each result says which configuration its plugin was loaded with."
    NAMES = ('word_counter', 'uppercase', 'slow_processor', 'streamer')

    def __init__(self): self.configs: Dict[str, Dict[str, Any]] = {}
    def discover_plugins(self) -> List[PluginData]: return [PluginData(n) for n in self.NAMES]
    def get_plugin_config_dataclass(self, name): return None
    def load_plugin(self, plugin_data: Any, config: Dict[str, Any]) -> None: self.configs[plugin_data.name] = dict(config or {})
    def reload_plugin(self, plugin_name: str, config: Optional[Dict[str, Any]] = None) -> None:
        if config is None: self.configs.pop(plugin_name, None)
        else: self.configs[plugin_name] = dict(config)
    def unload_plugin(self, plugin_name: str) -> None: self.configs.pop(plugin_name, None)
    def check_streaming_support(self, plugin_name: str) -> bool: return plugin_name == 'streamer'

    def execute_plugin(self, plugin_name: str, **params) -> Any:
        text, config = params.get('text', ''), self.configs.get(plugin_name, {})
        if plugin_name == 'slow_processor': time.sleep(float(params.get('seconds', 5)))  # never checks
        out = {'word_counter': f"Word count: {len(text.split())}", 'uppercase': text.upper()}.get(plugin_name, text)
        return {'text': out, 'metadata': {'plugin': plugin_name, 'model_id': config.get('model_id'),
                                          'device': config.get('device'), 'pid': os.getpid()}}

    def execute_plugin_stream(self, plugin_name: str, **params) -> Iterator[str]:
        for i in range(int(params.get('chunks', 200))):  # never checks
            yield f"w{i} "
            time.sleep(float(params.get('interval', 0.05)))


def text_processor_factory(): return TextProcessorManager()

def text_processor_worker(request_queue, result_queue, response_queue):
    "Worker process for text processing."
    base_worker_process(request_queue=request_queue, result_queue=result_queue, response_queue=response_queue,
                        plugin_manager_factory=text_processor_factory, result_adapter=default_result_adapter,
                        supports_streaming=True)


# --- companions, shaped like the real libraries'
@dataclass
class PluginMetadata:  # cjm-fasthtml-plugins
    name: str
    category: str
    title: str
    config_schema: Dict[str, Any] = field(default_factory=dict)
    version: Optional[str] = None
    is_configured: bool = False
    def get_unique_id(self) -> str: return f"{self.category}_{self.name}"


class UnifiedPluginRegistry:  # cjm-fasthtml-plugins: configurations saved as JSON files by unique id
    def __init__(self, config_dir: Path):
        self._plugins: Dict[str, PluginMetadata] = {}
        self._config_dir = Path(config_dir)
        self._config_dir.mkdir(exist_ok=True, parents=True)
    def register_plugin_manager(self, category: str, manager: Any) -> List[PluginMetadata]:
        found = []
        for data in manager.discover_plugins():
            meta = PluginMetadata(name=data.name, category=category, title=data.name, version=data.version)
            meta.is_configured = (self._config_dir / f"{meta.get_unique_id()}.json").exists()
            self._plugins[meta.get_unique_id()] = meta
            found.append(meta)
        return found
    def get_plugin(self, unique_id: str) -> Optional[PluginMetadata]: return self._plugins.get(unique_id)
    def get_plugins_by_category(self, category: str) -> List[PluginMetadata]:
        return [p for p in self._plugins.values() if p.category == category]
    def load_plugin_config(self, unique_id: str) -> Dict[str, Any]:
        f = self._config_dir / f"{unique_id}.json"
        return json.loads(f.read_text()) if f.exists() else {}
    def save_plugin_config(self, unique_id: str, config: Dict[str, Any]) -> bool:
        (self._config_dir / f"{unique_id}.json").write_text(json.dumps(config, indent=2))
        if unique_id in self._plugins: self._plugins[unique_id].is_configured = True
        return True


@dataclass
class WorkerState:  # cjm-fasthtml-resources
    pid: int
    worker_type: str
    job_id: Optional[str] = None
    plugin_id: Optional[str] = None
    plugin_name: Optional[str] = None
    loaded_plugin_resource: Optional[str] = None
    config: Optional[Dict[str, Any]] = None
    status: str = "idle"


class ResourceManager:  # cjm-fasthtml-resources: `None` leaves a field as it was
    def __init__(self): self._worker_states: Dict[int, WorkerState] = {}; self.unregistered: List[int] = []
    def register_worker(self, pid: int, worker_type: str): self._worker_states[pid] = WorkerState(pid, worker_type)
    def unregister_worker(self, pid: int):
        self._worker_states.pop(pid, None)
        self.unregistered.append(pid)
    def update_worker_state(self, pid: int, job_id=None, plugin_id=None, plugin_name=None, loaded_plugin_resource=None,
                            config=None, status=None):
        w = self._worker_states.get(pid)
        if w is None: return
        for k, v in dict(job_id=job_id, plugin_id=plugin_id, plugin_name=plugin_name,
                         loaded_plugin_resource=loaded_plugin_resource, config=config, status=status).items():
            if v is not None: setattr(w, k, v)
    def get_worker_by_pid(self, pid: int) -> Optional[WorkerState]: return self._worker_states.get(pid)
    def check_gpu_availability(self): return {'conflicts': []}


class SSEBroadcastManager:  # cjm-fasthtml-sse
    def __init__(self, max_queue_size: int = 1000, history_size: int = 500):
        self.connections: Set[asyncio.Queue] = set()
        self.history: List[Dict[str, Any]] = []
        self.max_queue_size, self.history_size = max_queue_size, history_size
    async def register_connection(self) -> asyncio.Queue:
        q = asyncio.Queue(maxsize=self.max_queue_size)
        self.connections.add(q)
        return q
    async def broadcast(self, event_type: str, data: Dict[str, Any], timeout: Optional[float] = None) -> int:
        message = {"type": event_type, "timestamp": datetime.now().isoformat(), "data": data}
        self.history = (self.history + [message])[-self.history_size:]
        for q in list(self.connections): await asyncio.wait_for(q.put(message), timeout or 0.1)
        return len(self.connections)


# --- the domain: a job type and its manager, written the seed's way
@dataclass
class TextProcessingJob(BaseJob):
    "Job for text processing tasks."
    text: str = ""
    plugin_name: str = ""


class TextProcessingManager(BaseJobManager[TextProcessingJob]):
    "Manager for text processing jobs with custom hooks."
    def __init__(self, plugin_registry, resource_manager, event_broadcaster, worker_config: Optional[WorkerConfig] = None):
        super().__init__(worker_type="text_processing", category="processing", supports_streaming=True,
                         worker_config=worker_config, plugin_registry=plugin_registry,
                         resource_manager=resource_manager, event_broadcaster=event_broadcaster)
        self.completed_count = 0
        self.validated: List[tuple] = []       # (plugin_id, config) seen by _validate_resources
        self.identified: List[Dict] = []       # configs seen by _extract_plugin_resource_identifier
        self.completion_texts: List[str] = []  # what _on_job_completed read through get_job_result

    def create_job(self, plugin_id: str, **kwargs) -> TextProcessingJob:
        plugin_name = self.get_plugin_name(plugin_id)
        job = TextProcessingJob(id=str(uuid.uuid4()), plugin_id=plugin_id, text=kwargs.get('text', ''),
                                plugin_name=plugin_name or "unknown")
        job.metadata['params'] = {k: v for k, v in kwargs.items()}
        return job

    def get_worker_entry_point(self) -> Callable: return text_processor_worker
    def prepare_execute_request(self, job: TextProcessingJob) -> Dict[str, Any]: return dict(job.metadata['params'])
    def extract_job_result(self, job: TextProcessingJob, result_data: Dict[str, Any]) -> Dict[str, Any]: return result_data

    def _extract_plugin_resource_identifier(self, config: Dict[str, Any]) -> str:
        self.identified.append(dict(config))
        return config.get('model_id', config.get('model', 'unknown-resource'))

    async def _validate_resources(self, plugin_id: str, plugin_config: Dict[str, Any]) -> Optional[str]:
        self.validated.append((plugin_id, dict(plugin_config)))
        return None

    def _on_job_completed(self, job_id: str) -> None:
        self.completed_count += 1
        result = self.get_job_result(job_id)
        self.completion_texts.append(result['data']['text'])


def build_app(config_dir: Path, worker_config: Optional[WorkerConfig] = None):
    "The app's globals, as the seed's demo builds them: registry (with one saved config), companions, manager, routes."
    registry = UnifiedPluginRegistry(config_dir)
    registry.register_plugin_manager("processing", TextProcessorManager())
    registry.save_plugin_config("processing_word_counter", {"model_id": "registry-model-7", "device": "cuda:0"})
    plugin_adapter, resource_adapter, sse_adapter = create_standard_adapters(
        plugin_registry=registry, resource_manager=ResourceManager(), sse_manager=SSEBroadcastManager())
    resource_manager, sse_manager = resource_adapter._resource_manager, sse_adapter._sse_manager
    job_manager = TextProcessingManager(plugin_adapter, resource_adapter, sse_adapter,
                                        worker_config or WorkerConfig(restart_policy=RestartPolicy.ON_CANCELLATION,
                                                                      max_restart_attempts=3, result_queue_size=50))
    app, rt = fast_app(pico=False)

    def jobs_list():
        jobs = sorted(job_manager.get_all_jobs(), key=lambda j: j.created_at, reverse=True)
        rows = [Tr(Td(j.id[:8] + "..."), Td(j.plugin_name), Td(j.status, cls=f"status-{j.status}"),
                   Td(Button("Cancel", hx_post=f"/jobs/{j.id}/cancel") if j.status == 'running' else ''))
                for j in jobs[:10]]
        return Div(Table(*rows), id="job-list")

    @rt("/jobs/create")
    async def post(plugin_id: str, text: str):
        try: await job_manager.start_job(plugin_id=plugin_id, text=text)
        except Exception as e: return Div(P(f"Error creating job: {e}", cls="error"), jobs_list())
        return jobs_list()

    @rt("/jobs/list")
    async def get(): return jobs_list()

    @rt("/jobs/{job_id}/cancel")
    async def post(job_id: str):
        success = await job_manager.cancel_job(job_id)
        return P("Cancelled" if success else "Failed to cancel", id="cancel-result")

    @rt("/jobs/{job_id}/result")
    async def get(job_id: str): return job_manager.get_job_result(job_id) or {}

    return dict(app=app, registry=registry, resource_manager=resource_manager, sse_manager=sse_manager,
                job_manager=job_manager)
