process EVOSCAN_MERGE {
    tag "${meta.id} ${kind}"
    label 'process_single'

    input:
    tuple val(meta), path(windows), path(parts, stageAs: 'parts/*'), val(kind)

    output:
    tuple val(meta), path("${meta.id}.${kind}.h5"), emit: merged
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), emit: versions

    script:
    """
    evoscan merge --windows ${windows} -o ${meta.id}.${kind}.h5 ${parts}
    """

    stub:
    """
    touch ${meta.id}.${kind}.h5
    """
}
