"What the test apps served by uvicorn share."


def serving_lifespan(manager, mounts:list):
    "A lifespan that starts `manager`; at shutdown it ends the open event streams of `mounts` (filled in once the app is mounted), then shuts the manager down."
    async def lifespan(app):
        await manager.start()
        try: yield
        finally:
            for jobs in mounts: jobs.hub.close()
            await manager.shutdown()
    return lifespan
