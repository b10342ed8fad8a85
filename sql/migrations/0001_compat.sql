-- Compatibility: the tables Supabase already has (auth.users) and the app-builder's own
-- projects and members. Created only where absent, so the same migrations apply to Supabase
-- (where they exist and may belong to another role) and to plain Postgres.
-- DO blocks test with to_regclass first: CREATE ... IF NOT EXISTS still checks CREATE
-- privilege on the schema, which a Supabase migration role may lack on `auth`.
DO $$
BEGIN
    IF to_regnamespace('auth') IS NULL THEN
        CREATE SCHEMA auth;
    END IF;
    IF to_regclass('auth.users') IS NULL THEN
        CREATE TABLE auth.users (
            id uuid PRIMARY KEY,
            email text,
            raw_app_meta_data jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now()
        );
    END IF;
    IF to_regclass('public.projects') IS NULL THEN
        CREATE TABLE public.projects (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            owner_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
            name text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX projects_owner_id_idx ON public.projects (owner_id);
    END IF;
    IF to_regclass('public.project_members') IS NULL THEN
        CREATE TABLE public.project_members (
            project_id uuid NOT NULL REFERENCES public.projects (id) ON DELETE CASCADE,
            user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
            role text NOT NULL DEFAULT 'editor',
            PRIMARY KEY (project_id, user_id)
        );
        CREATE INDEX project_members_user_id_idx ON public.project_members (user_id);
    END IF;
END
$$;
